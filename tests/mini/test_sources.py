"""train_sources: the commands train each bundled model with the benchmark's own configs and recipes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from sda.align.config import AlignConfig
from sda.mini.benchmarks import BENCHMARKS, get_benchmark
from sda.mini.sources import STEPS, SourcesRun, training_commands
from sda.utils.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


def _flag(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_training_commands_use_the_benchmark_configs(name):
    bench = get_benchmark(name)
    run = SourcesRun(name)
    data, results, assets = run.paths
    assert (data, assets) == (Path("data/mini") / name, ROOT / "sda" / "mini" / "assets" / name)
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
    spec = importlib.util.spec_from_file_location("train_sources", ROOT / "mini" / "train_sources.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with pytest.raises(UserError, match="--steps diffusion: unknown step; choose from " + ",".join(STEPS)):
        mod.main(["--steps", "diffusion"])
