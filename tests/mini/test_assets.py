"""The bundled mini source models: they load strictly with their configs, match the manifest, and the demo
samples the generator with its own training target."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sda.mini.pipeline import ADM_CONFIGS, adm_flags
from sda.models.adm_flags import MODEL_FLAG_DEFAULTS, create_model, load_adm_checkpoint, model_kwargs
from sda.utils.checkpoint import file_sha256

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "assets" / "mini"


@pytest.mark.parametrize("which", ["cond", "uncond"])
def test_bundled_adm_loads_strictly_with_its_config(which):
    cfg = json.loads((ROOT / ADM_CONFIGS[which]).read_text())
    flags = {k: cfg[k] for k in (*MODEL_FLAG_DEFAULTS, "num_classes") if k in cfg}
    model = create_model(**model_kwargs(flags))
    load_adm_checkpoint(model, ASSETS / f"adm_{which}.pt")  # strict: raises on any key or shape mismatch
    assert model.num_classes == (10 if which == "cond" else None)


def test_manifest_records_the_bundled_files_and_configs():
    manifest = json.loads((ASSETS / "MANIFEST.json").read_text())
    assert set(manifest["assets"]) == {"adm_cond.pt", "adm_uncond.pt", "classifier.pth"}
    for name, info in manifest["assets"].items():
        assert file_sha256(ASSETS / name) == info["sha256"], f"{name} changed without rerunning the gates"
    for which in ("cond", "uncond"):
        cfg = json.loads((ROOT / ADM_CONFIGS[which]).read_text())
        record = manifest["models"][f"adm_{which}.pt"]
        assert record["steps"] == cfg["steps"]
        assert record["model_flags"].get("predict_v", False) == cfg.get("predict_v", False)


def test_demo_samples_the_generator_with_its_training_target():
    cfg = json.loads((ROOT / ADM_CONFIGS["cond"]).read_text())
    flags = adm_flags("cond")
    assert cfg["predict_v"] is True  # the bundled generator predicts v
    assert flags[flags.index("--predict_v") + 1] == "True"
    assert "--predict_v" not in adm_flags("uncond")  # the projector predicts epsilon, as the reference's ADM
