"""scripts/download_ckpt.sh with a stand-in table (SDA_DOWNLOADS, file:// URLs): a file is checked against its
published hash prefix, a file without one is recorded on the first download and checked on every later run, and
the script ends by naming what it could not check against a published hash."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not (shutil.which("curl") or shutil.which("wget")), reason="needs curl or wget")


def download(dest: Path, table: list[tuple[Path, str, str]]) -> subprocess.CompletedProcess:
    lines = "\n".join(f"file://{src}\t{name}\t{check}" for src, name, check in table)
    env = {**os.environ, "SDA_DOWNLOADS": lines}
    return subprocess.run(["bash", "scripts/download_ckpt.sh", str(dest)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


@pytest.fixture
def upstream(tmp_path: Path) -> dict[str, Path]:
    files = {"classifier": b"weights of a classifier", "dit": b"weights of a DiT"}
    out = {}
    for name, data in files.items():
        out[name] = tmp_path / "upstream" / f"{name}.pth"
        out[name].parent.mkdir(exist_ok=True)
        out[name].write_bytes(data)
    return out


def test_a_published_prefix_is_checked(upstream: dict[str, Path], tmp_path: Path) -> None:
    prefix = hashlib.sha256(upstream["classifier"].read_bytes()).hexdigest()[:8]
    r = download(tmp_path / "ckpt", [(upstream["classifier"], f"cls-{prefix}.pth", prefix)])
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "ckpt" / f"cls-{prefix}.pth").read_bytes() == upstream["classifier"].read_bytes()
    assert "not checked" not in r.stdout
    r = download(tmp_path / "ckpt2", [(upstream["classifier"], "cls-00000000.pth", "00000000")])
    assert r.returncode != 0 and "is not the expected 00000000" in r.stderr
    assert not (tmp_path / "ckpt2" / "cls-00000000.pth").exists()  # only the .part, named in the message


def test_a_file_without_a_published_hash_is_recorded_then_checked(upstream: dict[str, Path], tmp_path: Path) -> None:
    dest, table = tmp_path / "ckpt", [(upstream["dit"], "DiT.pt", "")]
    r = download(dest, table)
    digest = hashlib.sha256(upstream["dit"].read_bytes()).hexdigest()
    assert r.returncode == 0 and f"{digest}  DiT.pt" in (dest / "SHA256SUMS").read_text()
    assert "not checked against a published hash" in r.stdout and "  DiT.pt" in r.stdout
    r = download(dest, table)  # present and matching its record: kept
    assert r.returncode == 0 and f"ok       {dest}/DiT.pt" in r.stdout
    assert (dest / "SHA256SUMS").read_text().count("DiT.pt") == 1
    upstream["dit"].write_bytes(b"changed upstream")
    (dest / "DiT.pt").write_bytes(b"a corrupted local copy")
    r = download(dest, table)  # the local copy fails its record, the new download too: stop, naming the record
    assert r.returncode != 0 and "SHA256SUMS" in r.stderr and "DiT.pt" in r.stderr
