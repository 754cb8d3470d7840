"""kill -9 at random moments, then rerun: every batching stage ends byte-identical to an uninterrupted run,
with no temporary file or lock left behind (20 kills per stage; both guidance norms for align)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from faults.commands import ENV, align_cmd, build_c_cmd, gen_cmd

from sda.testing import stray_files, tree_bytes

KILLS = 20


def run(cmd: list[str]) -> float:
    t0 = time.time()
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return time.time() - t0


def kill_at(cmd: list[str], delay: float) -> bool:
    """Start ``cmd``, SIGKILL its process group after ``delay`` s; True if it was killed (not finished)."""
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert proc.returncode == 0, err[-2000:]  # finished before the kill: it must have succeeded
    return False


def chaos(make_cmd: Callable[[Path], list[str]], root: Path, seed: int) -> None:
    """Clean run; then trials of random kills (each trial resumed to completion) until KILLS kills happened.
    Every completed trial must equal the clean run byte for byte and leave no stray file."""
    clean = root / "clean"
    t_clean = run(make_cmd(clean))
    expected = tree_bytes(clean)
    assert expected and not stray_files(clean)
    rng = random.Random(seed)
    kills, trial = 0, 0
    while kills < KILLS:
        out = root / f"trial{trial}"
        for _ in range(6):  # a few kills per trial, at random moments of the (resumed) run
            if kills >= KILLS or not kill_at(make_cmd(out), rng.uniform(0.3, t_clean)):
                break
            kills += 1
        run(make_cmd(out))  # the rerun that finishes the set
        assert tree_bytes(out) == expected, f"trial {trial}: outputs differ from the clean run"
        assert not stray_files(out), stray_files(out)
        trial += 1


@pytest.mark.slow
def test_gen_survives_random_kills(fault_inputs, tmp_path: Path) -> None:
    chaos(lambda out: gen_cmd(fault_inputs, out), tmp_path, seed=1)


@pytest.mark.slow
@pytest.mark.parametrize("norm", ["batch", "sample"])
def test_align_survives_random_kills(fault_inputs, tmp_path: Path, norm: str) -> None:
    chaos(lambda out: align_cmd(fault_inputs, out, norm), tmp_path, seed=2)


@pytest.mark.slow
def test_corruption_builder_survives_random_kills(fault_inputs, tmp_path: Path) -> None:
    chaos(lambda out: build_c_cmd(fault_inputs, out), tmp_path, seed=3)
