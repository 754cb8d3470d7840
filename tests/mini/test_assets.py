"""The bundled mini source models: they load strictly with their configs, match the manifest (with gates),
and the demo samples each generator with its own training target."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sda.mini.benchmarks import BENCHMARKS, CLASSIFIER_CONFIG, SOURCE_MODELS, get_benchmark
from sda.models.adm_flags import MODEL_FLAG_DEFAULTS, create_model, load_adm_checkpoint, model_kwargs
from sda.utils.checkpoint import file_sha256

ROOT = Path(__file__).resolve().parents[2]
NAMES = list(BENCHMARKS)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("which", ["cond", "uncond"])
def test_bundled_adm_loads_strictly_with_its_config(name, which):
    bench = get_benchmark(name)
    cfg = bench.adm_config(which)
    flags = {k: cfg[k] for k in (*MODEL_FLAG_DEFAULTS, "num_classes") if k in cfg}
    null_class = cfg.get("class_dropout", 0.0) > 0  # trained for classifier-free guidance: one more label row
    if which == "cond":
        flags["num_classes"] = cfg["num_classes"] + null_class
    model = create_model(**model_kwargs(flags))
    load_adm_checkpoint(model, ROOT / bench.assets / f"adm_{which}.pt")  # strict: raises on any mismatch
    assert model.num_classes == (10 + null_class if which == "cond" else None)


@pytest.mark.parametrize("name", NAMES)
def test_bundled_classifiers_load_with_the_recipe(name):
    from sda.mini.gates import load_source_classifier

    for model in ("classifier.pth", "oracle.pth", "classifier_lowpass.pth"):
        clf = load_source_classifier(ROOT / CLASSIFIER_CONFIG, ROOT / get_benchmark(name).assets / model)
        assert clf.head.num_classes == 10


@pytest.mark.parametrize("name", NAMES)
def test_manifest_records_the_bundled_files_configs_and_gates(name):
    bench = get_benchmark(name)
    assets = ROOT / bench.assets
    manifest = json.loads((assets / "MANIFEST.json").read_text())
    assert set(manifest["assets"]) == set(SOURCE_MODELS) and manifest["benchmark"] == name
    for model, info in manifest["assets"].items():
        assert file_sha256(assets / model) == info["sha256"], f"{model} changed without rerunning the gates"
    for which in ("cond", "uncond"):
        cfg = bench.adm_config(which)
        record = manifest["models"][f"adm_{which}.pt"]
        assert record["steps"] == cfg["steps"]
        assert record["model_flags"].get("predict_v", False) == cfg.get("predict_v", False)
    assert set("abcde") <= set(manifest["gates"]) and manifest["data"]["split_sha256"]
    s = bench.settings
    assert manifest["gates"]["settings"] == {
        "respacing": s.respacing, "N": s.N, "D": s.D, "scale": s.scale, "severity": s.severities[0]
    }  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
def test_demo_samples_the_generator_with_its_training_target(name):
    bench = get_benchmark(name)
    flags = bench.adm_flags("cond")
    assert bench.adm_config("cond")["predict_v"] is True  # the bundled generators predict v
    assert flags[flags.index("--predict_v") + 1] == "True"
    assert "--predict_v" not in bench.adm_flags("uncond")  # the projector predicts epsilon, as the reference's ADM
