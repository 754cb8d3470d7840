"""The ``run_tree`` fixture (tests/conftest.py) leaves no process behind, even when a child escapes its session."""

from __future__ import annotations

import subprocess
import sys

import pytest

# A parent that starts a grandchild in a session of its own (as torchrun does with its workers), then hangs.
ESCAPING = (
    "import subprocess, sys, time\n"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120.25)'], start_new_session=True)\n"
    "print('started', flush=True)\n"
    "time.sleep(120)\n"
)


def test_timeout_ends_the_whole_tree(run_tree) -> None:
    with pytest.raises(subprocess.TimeoutExpired):
        run_tree([sys.executable, "-c", ESCAPING], timeout=3)
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "time.sleep(120.25)" not in ps


def test_finished_run_returns_output(run_tree) -> None:
    res = run_tree(
        [sys.executable, "-c", "import os, sys; print(os.environ['SDA_TEST_PROCESS_TREE']); sys.exit(3)"], timeout=60
    )
    assert res.returncode == 3 and len(res.stdout.strip()) == 32
