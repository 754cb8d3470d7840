"""A full disk: gen and align stop with one line that says so and nothing half-written; with space again, the
same command resumes to the bytes of an uninterrupted run. Needs a small tmpfs (root on Linux); skipped with
the reason elsewhere."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from faults.commands import ENV, align_cmd, gen_cmd

from sda.testing import stray_files, tree_bytes


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip() or 'mount failed'}); needs root on Linux")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def grow(path: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True, capture_output=True)


@pytest.mark.parametrize("stage", ["gen", "align"])
def test_full_disk_is_reported_and_resumes(fault_inputs, tmp_path: Path, stage: str) -> None:
    make = (
        (lambda out: gen_cmd(fault_inputs, out))
        if stage == "gen"
        else (lambda out: align_cmd(fault_inputs, out, "batch"))
    )
    clean = tmp_path / "clean"
    assert subprocess.run(make(clean), env=ENV, capture_output=True).returncode == 0
    expected = tree_bytes(clean)
    with tmpfs(tmp_path / "small", "24k") as disk:  # room for the manifest and a few images
        out = disk / "out"
        r = subprocess.run(make(out), env=ENV, capture_output=True, text=True)
        assert r.returncode == 2, r.stderr[-2000:]
        err = r.stderr.strip().splitlines()[-1]
        assert err.startswith("error: cannot write") and "no space left on the device" in err and "rerun" in err
        assert "Traceback" not in r.stderr
        assert not [f for f in stray_files(out) if f.endswith(".tmp")]  # complete files only
        assert len(tree_bytes(out)) < len(expected)
        grow(disk, "64m")
        r = subprocess.run(make(out), env=ENV, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
        assert tree_bytes(out) == expected and not stray_files(out)
