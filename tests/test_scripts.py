"""The scripts and entry points: --help answers and changes nothing, bad arguments exit 2 with a reason, the
GPU count needs no nvidia-smi, and every command the README
documents is accepted by the script or entry point it names (scripts run with DRY_RUN=1, entry points'
flags parsed by their own parsers)."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.name for p in (ROOT / "scripts").glob("[!_]*.sh"))
ENTRY_POINTS = sorted(
    str(p.relative_to(ROOT)) for d in ("gen", "align", "finetune", "eval", "mini") for p in (ROOT / d).glob("*.py")
)
ENV = {**os.environ, "PY": sys.executable, "PYTHONWARNINGS": "ignore"}


def bash(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", *args], cwd=ROOT, env={**ENV, **(env or {})}, capture_output=True, text=True, timeout=timeout
    )


def tree_state() -> set[str]:
    """The top-level entries of the repository and the files git would report (to detect side effects)."""
    status = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=ROOT, capture_output=True, text=True)
    return set(os.listdir(ROOT)) | set(status.stdout.splitlines())


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_help_exits_0_without_side_effects(script: str) -> None:
    before = tree_state()
    for flag in ("--help", "-h"):
        r = bash(f"scripts/{script}", flag)
        assert r.returncode == 0, r.stderr
        assert len(r.stdout.splitlines()) >= 2, r.stdout
    assert tree_state() == before


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["scripts/align.sh", "c"], "unknown set 'c'"),
        (["scripts/eval.sh", "ResNet5O"], "unknown model 'ResNet5O'"),
        (["scripts/finetune.sh"], "name a model"),
        (["scripts/finetune.sh", "SwinX"], "unknown model 'SwinX'"),
        (["scripts/download_ckpt.sh", "--to", "x"], "at most one argument"),
        (["scripts/download_ckpt.sh", "--dest"], "unknown option '--dest'"),
        (["scripts/setup.sh", "--upgrade"], "unknown argument '--upgrade'"),
        (["scripts/gen.sh", "--bogus"], "unrecognized arguments: --bogus"),
        (["scripts/demo.sh", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_script_bad_arguments_exit_2_with_the_reason(args: list[str], fragment: str) -> None:
    before = tree_state()
    r = bash(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert fragment in r.stderr
    assert tree_state() == before


def test_ngpu_is_validated_and_found_without_nvidia_smi(tmp_path: Path) -> None:
    path = f"{tmp_path}:/usr/bin:/bin"  # no nvidia-smi on this PATH (and none needed)
    r = bash("-c", "source scripts/_lib.sh; resolve_ngpu; echo $NGPU", env={"PATH": path})
    assert r.returncode == 0 and r.stdout.strip() == "1", r.stderr  # a CPU machine: one process
    r = bash("scripts/align.sh", "W", env={"NGPU": "two", "DRY_RUN": "1"})
    assert r.returncode == 2 and "NGPU=two is not a positive number" in r.stderr


def dry(script: str, *args: str, env: dict | None = None) -> list[list[str]]:
    """The commands a stage script would run (DRY_RUN=commands: no plans, no input checks; those are tested in
    tests/test_routes.py), each split into arguments; table1.sh's "== stage" headings are dropped."""
    r = bash(f"scripts/{script}", *args, env={**(env or {}), "DRY_RUN": "commands"})
    assert r.returncode == 0, r.stderr
    return [shlex.split(line) for line in r.stdout.splitlines() if line.strip() and not line.startswith("== ")]


# ----------------------------------------------------------------------------- the README's commands
def _load(rel: str):
    name = rel.replace("/", "_")[:-3] + "_entry"
    spec = importlib.util.spec_from_file_location(name, ROOT / rel)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def accept(entry: str, args: list[str]) -> None:
    """Parse ``args`` as ``entry`` would, building its typed config where it has one (nothing runs)."""
    from sda.align import AlignConfig
    from sda.eval import EvalConfig
    from sda.eval.builders import CorruptedSet, WatermarkedSet
    from sda.eval.report import ReportConfig
    from sda.finetune.config import BNAdaptConfig, FinetuneConfig
    from sda.gen import GenConfig

    configs = {
        "gen/sample.py": GenConfig.from_argv,
        "align/project.py": AlignConfig.from_argv,
        "eval/evaluate.py": EvalConfig.from_argv,
        "eval/test_ensemble.py": EvalConfig.from_argv,
        "eval/build_c.py": CorruptedSet.from_argv,
        "eval/build_w.py": WatermarkedSet.from_argv,
        "finetune/train.py": FinetuneConfig.from_argv,
        "finetune/bn_adapt.py": BNAdaptConfig.from_argv,
        "eval/report.py": ReportConfig.from_argv,
    }
    if entry in configs:
        configs[entry](args)
    else:
        module = _load(entry)
        if hasattr(module, "build_parser"):
            module.build_parser().parse_args(args)
        else:
            module.parse_args(args)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_entry_point_help_and_unknown_flags(entry: str) -> None:
    r = subprocess.run([sys.executable, entry, "--help"], cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert r.returncode == 0 and "usage" in r.stdout.lower(), r.stderr
    r = subprocess.run([sys.executable, entry, "--no-such-flag"], cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert r.returncode == 2 and "usage:" in r.stderr and "error:" in r.stderr  # argparse: usage and the reason


def readme_commands() -> list[str]:
    """Every command line in the bash blocks of the README and of docs/mini/README.md (continuations joined, comments
    and placeholders dropped)."""
    text = "\n".join((ROOT / f).read_text() for f in ("README.md", "docs/mini/README.md"))
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#") and not any(t in line for t in ("<", "...", "$")):
                lines.append(" ".join(line.split()))
    return lines


def test_readme_documents_commands() -> None:
    cmds = readme_commands()
    assert any("bash scripts/demo.sh" in c for c in cmds) and len(cmds) > 20


def _split_env(words: list[str]) -> tuple[dict[str, str], list[str]]:
    env = {}
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
        k, v = words.pop(0).split("=", 1)
        env[k] = v
    return env, words


@pytest.mark.parametrize("line", readme_commands())
def test_readme_command_is_accepted(line: str) -> None:
    env, words = _split_env(shlex.split(line.replace("&&", ";").split(";")[-1]))
    if words[0] == "bash" and words[1].startswith("scripts/"):
        script, args = Path(words[1]).name, words[2:]
        if script in ("setup.sh", "test.sh", "download_ckpt.sh"):
            assert bash(f"scripts/{script}", "--help").returncode == 0  # they take no stage flags
            return
        if script == "demo.sh":
            accept("mini/demo.py", args)
            return
        for cmd in dry(script, *args, env=env):
            entry = next(w for w in cmd if w.endswith(".py"))
            accept(entry, cmd[cmd.index(entry) + 1 :])
        return
    if words[0] == "torchrun":
        words = ["python", *words[next(i for i, w in enumerate(words) if w.endswith(".py")) :]]
    assert words[0] == "python" and words[1].endswith(".py"), f"unknown kind of command: {line}"
    accept(words[1], words[2:])
