"""train_sources: the commands train each bundled model with the benchmark's own configs and recipes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from sda.align.config import AlignConfig
from sda.mini.benchmarks import BENCHMARKS, SOURCE_MODELS, get_benchmark, seed_assets
from sda.mini.sources import STEPS, SourcesRun, training_commands
from sda.utils.checkpoint import file_sha256
from sda.utils.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


def _flag(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_training_commands_use_the_benchmark_configs(name):
    bench = get_benchmark(name)
    run = SourcesRun(name)
    data, results, assets = run.paths
    assert (data, assets) == (Path("data/mini") / name, Path("assets/mini") / name)  # under the working folder
    cmds = training_commands(run)
    assert _flag(cmds["adm_uncond"], "--config") == str(bench.adm_config_path("uncond"))
    assert _flag(cmds["adm_cond"], "--config") == str(bench.adm_config_path("cond"))
    assert cmds["classifier"][1] == str(bench.classifier_scratch)
    assert _flag(cmds["classifier_lowpass"], "--data-root") == str(data / f"train_lowpass_D{bench.settings.D}")
    proj = cmds["oracle_projection"]
    s = bench.settings
    cfg = AlignConfig.from_argv(proj[1:])  # the command is generated from a config: it parses back to the settings
    p = cfg.projection
    assert (p.N, p.D, p.scale, cfg.timestep_respacing) == (s.N, s.D, s.scale, str(s.respacing))
    assert cfg.base_samples == data / f"train{bench.oracle_train_per_class}"
    oracle = cmds["oracle"]
    assert oracle[1] == bench.finetune_config and f"load_from={assets / 'classifier.pth'}" in oracle
    assert _flag(oracle, "--data-root") == str(results / "oracle_train" / "DiT-Syn")


def test_cli_refuses_unknown_steps():
    mod = _train_sources_cli()
    with pytest.raises(UserError, match="--steps diffusion: unknown step; choose from " + ",".join(STEPS)):
        mod.main(["--steps", "diffusion"])


def _train_sources_cli():
    spec = importlib.util.spec_from_file_location("train_sources", ROOT / "mini" / "train_sources.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_retraining_never_writes_the_bundled_models():
    bundled = get_benchmark("glyphs32").assets
    with pytest.raises(UserError, match="--assets .* is inside the installed package"):
        SourcesRun("glyphs32", assets=bundled)
    with pytest.raises(UserError, match="--assets .* is inside the installed package"):
        _train_sources_cli().main(["--assets", str(bundled), "--steps", "gates"])


def test_a_retrained_folder_starts_from_the_bundled_models(tmp_path):
    bench = get_benchmark("glyphs32")
    assets = tmp_path / "assets"
    assets.mkdir()
    (assets / "oracle.pth").write_bytes(b"retrained")  # a model already retrained here is kept
    copied = seed_assets(bench, assets)
    assert copied == [n for n in (*SOURCE_MODELS, "MANIFEST.json") if n != "oracle.pth"]
    assert (assets / "oracle.pth").read_bytes() == b"retrained"
    for name in copied:
        assert file_sha256(assets / name) == file_sha256(bench.assets / name)
    assert sorted(p.name for p in assets.iterdir()) == sorted([*copied, "oracle.pth"])  # no temporary left
    assert seed_assets(bench, assets) == []


def test_train_sources_without_steps_writes_only_its_own_folder(tmp_path):
    bench = get_benchmark("glyphs32")
    before = {p.name: file_sha256(p) for p in bench.assets.iterdir()}
    assets = tmp_path / "assets"
    args = ["--assets", str(assets), "--results", str(tmp_path / "r"), "--data", str(tmp_path / "d"), "--steps", ""]
    _train_sources_cli().main(args)
    assert {p.name: file_sha256(p) for p in bench.assets.iterdir()} == before
    manifest = json.loads((assets / "MANIFEST.json").read_text())
    bundled = json.loads((bench.assets / "MANIFEST.json").read_text())
    assert manifest["assets"] == bundled["assets"] and manifest["gates"] == bundled["gates"]
