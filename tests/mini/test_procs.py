"""The stage runner: logs, failures, and the threads each job gets."""

from pathlib import Path

import pytest

from sda.mini.procs import StageRunner
from sda.utils.errors import UserError

PRINT_THREADS = ["-c", "import os; print('threads', os.environ['OMP_NUM_THREADS'])"]


def _threads(log_dir: Path, name: str) -> str:
    return next(line for line in (log_dir / f"{name}.log").read_text().splitlines() if line.startswith("threads"))


def test_jobs_share_threads_unless_pinned(tmp_path):
    run = StageRunner(tmp_path, threads=4)
    run("s", "alone", PRINT_THREADS)
    assert _threads(tmp_path, "alone") == "threads 4"  # one job alone gets every thread
    run.parallel("s", [("a", PRINT_THREADS), ("b", PRINT_THREADS)])
    assert _threads(tmp_path, "a") == _threads(tmp_path, "b") == "threads 2"
    run.parallel("s", [("p", PRINT_THREADS)], threads_per_job=1)
    assert _threads(tmp_path, "p") == "threads 1"  # pinned: whatever --threads is
    assert set(run.job_seconds) == {"alone", "a", "b", "p"} and run.seconds["s"] > 0


def test_a_failing_job_names_itself_and_its_log(tmp_path):
    run = StageRunner(tmp_path, threads=2)
    with pytest.raises(UserError, match=r"stage bad failed \(exit 3\): boom; see .*bad\.log"):
        run("s", "bad", ["-c", "import sys; print('boom', file=sys.stderr); sys.exit(3)"])
    assert "boom" in (tmp_path / "bad.log").read_text()


def test_env_reaches_these_jobs_only(tmp_path, monkeypatch):
    monkeypatch.delenv("SDA_TEST_VAR", raising=False)
    run = StageRunner(tmp_path, threads=1)
    show = ["-c", "import os; print('var', os.environ.get('SDA_TEST_VAR'))"]
    run.parallel("s", [("with", show)], env={"SDA_TEST_VAR": "x", "OMP_NUM_THREADS": "9"})
    run("s", "without", show)
    lines = {n: (tmp_path / f"{n}.log").read_text() for n in ("with", "without")}
    assert "var x" in lines["with"] and "var None" in lines["without"]
    run.parallel("s", [("t", PRINT_THREADS)], env={"OMP_NUM_THREADS": "9"})
    assert _threads(tmp_path, "t") == "threads 1"  # the runner's thread count wins
