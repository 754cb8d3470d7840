import argparse
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from sda.utils.checkpoint import extract_state_dict, load_state_dict_strict, safe_load
from sda.utils.dist import shard
from sda.utils.errors import UserError
from sda.utils.io import atomic_write, list_images, load_rgb, save_image, write_json
from sda.utils.seed import image_seed, make_generator


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_safe_load_allows_weights_namespace_and_numpy(tmp_path):
    obj = {
        "ema": {"w": torch.ones(2)},
        "args": argparse.Namespace(model="DiT-XL/2"),
        "step": np.int64(3),
        "hist": np.arange(3.0),
    }
    torch.save(obj, tmp_path / "a.pt")
    out = safe_load(tmp_path / "a.pt")
    assert out["args"].model == "DiT-XL/2" and int(out["step"]) == 3
    assert torch.equal(extract_state_dict(out)["w"], torch.ones(2))


def test_safe_load_refuses_pickle_without_opt_in(tmp_path):
    torch.save({"x": _Evil()}, tmp_path / "evil.pt")
    with pytest.raises(UserError, match="--allow-pickle"):
        safe_load(tmp_path / "evil.pt")


def test_safe_load_missing_and_corrupt(tmp_path):
    with pytest.raises(UserError, match="not found"):
        safe_load(tmp_path / "nope.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError):
        safe_load(tmp_path / "bad.pt")


def test_extract_prefers_ema_and_strips_module():
    sd = extract_state_dict({"model": {"module.a": torch.zeros(1)}, "ema": {"module.a": torch.ones(1)}})
    assert list(sd) == ["a"] and sd["a"].item() == 1.0


def test_strict_load_names_keys():
    m = torch.nn.Linear(2, 3)
    sd = {"weight": torch.zeros(3, 2), "extra": torch.zeros(1)}
    with pytest.raises(UserError, match=r"missing keys: bias.*unexpected keys: extra"):
        load_state_dict_strict(m, sd, "ckpt.pt")
    with pytest.raises(UserError, match="shape mismatches"):
        load_state_dict_strict(m, {"weight": torch.zeros(2, 2), "bias": torch.zeros(3)}, "ckpt.pt")


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out" / "x.json"
    with pytest.raises(RuntimeError), atomic_write(target, "w") as f:
        f.write("partial")
        raise RuntimeError("boom")
    assert not target.exists() and os.listdir(tmp_path / "out") == []
    write_json(target, {"a": 1})
    assert target.read_text().strip().startswith("{")


def test_atomic_write_survives_killed_process(tmp_path):
    # A process killed mid-write leaves only a hidden temporary file, never the target.
    code = textwrap.dedent(f"""
        import os
        from sda.utils.io import atomic_write
        with atomic_write({str(tmp_path / "img.png")!r}) as f:
            f.write(b'x' * 100)
            f.flush()
            os._exit(9)
    """)
    subprocess.run([sys.executable, "-c", code], check=False)
    assert not (tmp_path / "img.png").exists()
    assert list_images(tmp_path) == []  # the temporary file is hidden from readers


def test_save_image_format_follows_extension(tmp_path):
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8))
    save_image(img, tmp_path / "a" / "x.JPEG")
    save_image(img, tmp_path / "a" / "y.png")
    assert Image.open(tmp_path / "a" / "x.JPEG").format == "JPEG"
    assert Image.open(tmp_path / "a" / "y.png").format == "PNG"
    assert list_images(tmp_path) == ["a/x.JPEG", "a/y.png"]
    (tmp_path / "a" / "z.png").write_bytes(b"garbage")
    with pytest.raises(UserError, match="z.png"):
        load_rgb(tmp_path / "a" / "z.png")


def test_unwritable_output_is_user_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match="cannot write"):
        write_json(blocker / "sub" / "x.json", {})


def test_seeds_and_shards():
    assert image_seed(0, 3, 7) == image_seed(0, 3, 7) != image_seed(0, 7, 3)
    a = torch.randn(3, generator=make_generator(image_seed(0, 1)))
    b = torch.randn(3, generator=make_generator(image_seed(0, 1)))
    assert torch.equal(a, b)
    items = list(range(10))
    parts = [shard(items, r, 3) for r in range(3)]
    assert sorted(sum(parts, [])) == items


def test_atomic_files_get_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "p.json", {})
    finally:
        os.umask(old)
    assert (tmp_path / "p.json").stat().st_mode & 0o777 == 0o644


def test_content_hash_is_cached_by_size_mtime_inode_and_ctime(tmp_path, monkeypatch):
    import os
    import time

    from sda.utils import checkpoint as ck

    monkeypatch.setenv("SDA_CACHE_DIR", str(tmp_path / "cache"))
    f = tmp_path / "w.pt"
    f.write_bytes(b"a" * 100)
    calls = []
    real = ck.file_sha256
    monkeypatch.setattr(ck, "file_sha256", lambda p, **k: calls.append(p) or real(p))
    first = ck.cached_sha256(f)
    assert ck.cached_sha256(f) == first and len(calls) == 1  # the second call reads the cache
    f.write_bytes(b"b" * 100)  # same size ...
    os.utime(f, ns=(1, 1))  # ... other mtime: hashed again
    assert ck.cached_sha256(f) != first and len(calls) == 2
    st = f.stat()
    time.sleep(0.01)
    f.write_bytes(b"c" * 100)  # same size, and the old mtime put back: the ctime still tells
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert ck.cached_sha256(f) == real(f) and len(calls) == 3
    other = tmp_path / "other.pt"
    other.write_bytes(b"d" * 100)
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(other, f)  # another file of the same size and mtime moved in: another inode
    assert ck.cached_sha256(f) == real(f) and len(calls) == 4


def test_run_folder_refusal_names_each_changed_setting(tmp_path):
    from sda.utils.runfolder import RunFolder

    a = RunFolder(tmp_path / "r", {"N": 50, "model": {"sha256": "aaa", "name": "m.pt"}}, "k.json")
    a.claim()
    a.release()
    b = RunFolder(tmp_path / "r", {"N": 25, "model": {"sha256": "bbb", "name": "m.pt"}}, "k.json", fix="do X")
    with pytest.raises(UserError, match=r"other settings \(N: 50 -> 25, model\.sha256: 'aaa' -> 'bbb'\); do X"):
        b.claim()
    (tmp_path / "r" / "sub").mkdir()
    (tmp_path / "r" / "sub" / ".x.png.sda-abc.tmp").write_bytes(b"partial")
    assert a.claim() == 1 and not list((tmp_path / "r").rglob("*.tmp"))  # partials of a killed run removed
    a.release()


def test_a_claim_removes_only_its_own_partials_outside_live_runs(tmp_path):
    """A user's hidden .tmp file is not ours; a nested folder that another live run holds keeps its partials."""
    import json
    import os
    import socket

    from sda.utils.io import atomic_write
    from sda.utils.runfolder import LOCK_NAME, RunFolder, _process_start

    root = tmp_path / "r"
    (root / "notes").mkdir(parents=True)
    (root / "notes" / ".draft.tmp").write_text("a user's own file")
    f = RunFolder(root, {"N": 1}, "k.json")
    with pytest.raises(UserError, match="is not empty and no run of this project wrote it"):
        f.claim()  # a folder of someone else's files: not ours to write into, or to clean
    (root / "k.json").write_text(json.dumps({"settings": {"N": 1}}))  # as a run of ours left it
    nested = root / "align_out"
    nested.mkdir()
    live = {"host": socket.gethostname(), "pid": os.getpid(), "start": _process_start(os.getpid())}
    (nested / LOCK_NAME).write_text(json.dumps(live))  # a live run writes align_out/
    (nested / ".img.png.sda-live.tmp").write_bytes(b"in flight")
    (root / ".gone.png.sda-dead.tmp").write_bytes(b"partial of a killed run")
    assert f.claim() == 1
    f.release()
    assert (root / "notes" / ".draft.tmp").exists() and (nested / ".img.png.sda-live.tmp").exists()
    assert not (root / ".gone.png.sda-dead.tmp").exists()
    with pytest.raises(RuntimeError), atomic_write(root / "x.bin") as out:  # our own names carry the mark
        out.write(b"1")
        assert [p.name for p in root.glob(".x.bin.sda-*.tmp")]
        raise RuntimeError


def test_shard_batches_keeps_batches_whole():
    from sda.utils.dist import shard_batches

    assert shard_batches(7, 3, 0, 2) == [0, 1, 2, 6] and shard_batches(7, 3, 1, 2) == [3, 4, 5]
    assert sorted(shard_batches(10, 4, 0, 3) + shard_batches(10, 4, 1, 3) + shard_batches(10, 4, 2, 3)) == list(
        range(10)
    )
