"""Shared fixtures. ``one_thread``: torch on one intra-op thread for a module (tiny models run fastest
that way and do not stall on a busy 2-core machine).
``run_tree``: run an entry point (or torchrun) as a subprocess and never leave orphans.

torchrun starts its workers in sessions of their own, so killing torchrun (which ``subprocess.run`` does
with SIGKILL on a timeout or an exception, e.g. Ctrl-C) leaves the workers running, re-parented to init.
``run_tree`` marks the child's environment with a unique tag that every descendant inherits, asks the
child to stop with SIGTERM first (torchrun then stops its workers), and finally SIGKILLs every process
still carrying the tag. The child also gets SIGTERM if the test process itself dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # test folders import their helpers (faults.commands)
# the content-hash cache of checkpoints goes to a folder of this test session, not ~/.cache
os.environ.setdefault("SDA_CACHE_DIR", tempfile.mkdtemp(prefix="sda-test-cache-"))

TAG_VAR = "SDA_TEST_PROCESS_TREE"

# Re-exec with PR_SET_PDEATHSIG = SIGTERM (Linux), so the child hears about a killed test runner.
_PDEATHSIG_LAUNCHER = (
    "import ctypes, os, signal, sys\n"
    "try:\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))\n"
    "except (OSError, AttributeError):\n"
    "    pass\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(143)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


def tagged_pids(tag: str) -> list[int]:
    """Processes (other than this one) whose environment carries ``TAG_VAR=tag``."""
    needle = f"{TAG_VAR}={tag}".encode()
    pids = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:  # gone, or not ours
            continue
        if needle in env.split(b"\0"):
            pids.append(int(entry.name))
    return pids


def _signal(pid: int, sig: int, group: bool = False) -> None:
    try:
        os.killpg(pid, sig) if group else os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def end_tree(proc: subprocess.Popen, tag: str, grace_s: float = 20.0) -> None:
    """SIGTERM the child's process group and wait up to grace_s; then SIGKILL whatever carries the tag."""
    if proc.poll() is None:
        _signal(proc.pid, signal.SIGTERM, group=True)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    for _ in range(3):
        left = tagged_pids(tag)
        if not left and proc.poll() is not None:
            break
        _signal(proc.pid, signal.SIGKILL, group=True)
        for pid in left:
            _signal(pid, signal.SIGKILL)
        time.sleep(0.2)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


RunTree = Callable[..., subprocess.CompletedProcess]


@pytest.fixture
def run_tree() -> Iterator[RunTree]:
    """``run_tree(cmd, *, timeout, env=None, cwd=None)`` -> CompletedProcess (text, stdout and stderr captured).

    Like ``subprocess.run(..., capture_output=True, text=True, timeout=...)``, except that on a timeout,
    an exception or an interrupt the whole process tree is ended, and at teardown any process left
    from the run (e.g. a worker that outlived torchrun) is killed.
    """
    started: list[tuple[subprocess.Popen, str]] = []

    def run(
        cmd: Sequence[str], *, timeout: float, env: dict[str, str] | None = None, cwd: str | Path | None = None
    ) -> subprocess.CompletedProcess:
        tag = uuid.uuid4().hex
        env = {**(os.environ if env is None else env), TAG_VAR: tag}
        argv = [sys.executable, "-c", _PDEATHSIG_LAUNCHER, str(os.getpid()), *map(str, cmd)]
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        started.append((proc, tag))
        try:
            out, err = proc.communicate(timeout=timeout)
        except BaseException:  # timeout, Ctrl-C, a failing assertion elsewhere: end the whole tree
            end_tree(proc, tag)
            raise
        return subprocess.CompletedProcess(list(map(str, cmd)), proc.returncode, out, err)

    yield run
    for proc, tag in started:
        end_tree(proc, tag, grace_s=5.0)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread for the requesting module; the previous count is restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
