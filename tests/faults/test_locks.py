"""A claimed run folder: a second run on the same folder is refused while the first is alive; a killed run's
lock is stale and taken over; and the lock is released at the end, whatever the ending."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from faults.commands import ENV, align_cmd

from sda.utils.errors import UserError
from sda.utils.runfolder import LOCK_NAME, RunFolder


def test_second_claim_is_refused_and_a_dead_holder_is_taken_over(tmp_path: Path) -> None:
    a = RunFolder(tmp_path / "run", {"seed": 0}, "key.json")
    a.claim()
    b = RunFolder(tmp_path / "run", {"seed": 0}, "key.json")
    with pytest.raises(UserError, match=r"is being written by another run \(pid \d+ on .*delete .*\.lock"):
        b.claim()
    a.release()
    b.claim()  # free again
    b.release()
    dead = subprocess.Popen(["sleep", "0"])
    dead.wait()
    (tmp_path / "run" / LOCK_NAME).write_text(json.dumps({"host": os.uname().nodename, "pid": dead.pid}))
    c = RunFolder(tmp_path / "run", {"seed": 0}, "key.json")
    c.claim()  # the holder is gone: stale, taken over
    assert json.loads((tmp_path / "run" / LOCK_NAME).read_text())["pid"] == os.getpid()
    c.release()
    assert not (tmp_path / "run" / LOCK_NAME).exists()


def test_two_align_processes_on_one_folder(fault_inputs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = subprocess.Popen(align_cmd(fault_inputs, out, "batch"), env=ENV, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    lock = out / "ImageNet-W-Syn" / "val" / LOCK_NAME
    deadline = time.time() + 60
    while not lock.exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGSTOP)  # alive but paused: the claim holds however slow the second start is
    assert lock.exists() and first.poll() is None, "the first run did not claim its folder"
    second = subprocess.run(align_cmd(fault_inputs, out, "batch"), env=ENV, capture_output=True, text=True)
    assert second.returncode == 2 and "is being written by another run" in second.stderr
    os.killpg(first.pid, signal.SIGKILL)  # the holder dies ...
    first.wait()
    third = subprocess.run(align_cmd(fault_inputs, out, "batch"), env=ENV, capture_output=True, text=True)
    assert third.returncode == 0, third.stderr[-2000:]  # ... and its stale lock is taken over
    assert not lock.exists()
