"""Safe checkpoint loading.

Checkpoints load with ``torch.load(weights_only=True)`` plus an allow-list of
harmless types found in the field's checkpoint formats (numpy arrays and scalars,
``argparse.Namespace`` in DiT training checkpoints, mmengine's ``HistoryBuffer``
in MMPreTrain checkpoints). Anything else needs ``allow_pickle=True``, which the
entry points expose as ``--allow-pickle``: only for files you trust.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import json
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sda.utils.errors import UserError

STATE_DICT_KEYS = ("ema", "state_dict", "model")


class UnsafePickleError(UserError):
    """A checkpoint holds pickled objects outside the allow-list (its weights may still be extracted safely)."""


def _allow_list() -> list[Any]:
    allowed: list[Any] = [argparse.Namespace, collections.Counter, np.ndarray, np.dtype]
    # numpy moved its internals to numpy._core in 2.0; pickles name either path.
    for mod_name in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            mod = __import__(mod_name, fromlist=["_reconstruct", "scalar"])
            allowed += [mod._reconstruct, mod.scalar]
        except (ImportError, AttributeError):
            pass
    allowed += [type(np.dtype(t)) for t in ("f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "b1")]
    try:
        from mmengine.logging.history_buffer import HistoryBuffer

        allowed.append(HistoryBuffer)
    except ImportError:  # mmengine is optional for the diffusion stages
        pass
    return allowed


class _Inert:
    """What an object outside the allow-list becomes in :func:`extract_weights`: built from nothing, it runs no code
    (calls, attribute sets and ``__setstate__`` land on this inert record)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> _Inert:
        return _Inert()


class _WeightsUnpickler(pickle.Unpickler):
    """Builds tensors and plain containers; every other global is an inert stub, so no pickled code runs."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name.startswith("_rebuild_") or module == "torch" and name.endswith("Storage"):
            return getattr(__import__(module, fromlist=[name]), name)
        if (module, name) in {("collections", "OrderedDict"), ("torch", "Size"), ("torch", "device")}:
            return getattr(__import__(module, fromlist=[name]), name)
        return _Inert


class _WeightsPickle:
    """The ``pickle_module`` torch.load uses for :func:`extract_weights`."""

    Unpickler = _WeightsUnpickler
    __name__ = "sda.weights_pickle"

    @staticmethod
    def load(file: Any, **kwargs: Any) -> Any:
        return _WeightsUnpickler(file, **kwargs).load()


def extract_weights(
    path: str | os.PathLike, keys: tuple[str, ...] = STATE_DICT_KEYS, map_location: Any = "cpu"
) -> dict:
    """The weights of a checkpoint whose other pickled objects are outside the allow-list (an MMEngine training
    checkpoint's message hub and optimizer state, written by stock mmengine or a fork of MMPreTrain): tensors and
    containers are rebuilt, every other object becomes an inert stub, so nothing in the file runs. Returns the
    state dict under ``keys`` (a :class:`UserError` when there is none)."""
    try:
        obj = torch.load(Path(path), map_location=map_location, weights_only=False, pickle_module=_WeightsPickle)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as e:
        raise UserError(f"checkpoint {path} is not a readable PyTorch file ({e}); download it again") from e
    return extract_state_dict(obj, keys)


def safe_load(path: str | os.PathLike, *, allow_pickle: bool = False, map_location: Any = "cpu") -> Any:
    """Load a checkpoint safely; a legacy pickle needs ``allow_pickle=True``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found; download it with scripts/download_ckpt.sh or fix the path")
    if allow_pickle:
        return torch.load(path, map_location=map_location, weights_only=False)
    try:
        with torch.serialization.safe_globals(_allow_list()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        what = found.group(1) if found else "unsupported object"
        raise UnsafePickleError(
            f"checkpoint {path} holds pickled objects outside the safe allow-list ({what}); "
            "re-run with --allow-pickle if you trust this file"
        ) from e
    except (RuntimeError, EOFError, OSError) as e:
        raise UserError(f"checkpoint {path} is not a readable PyTorch file ({e}); download it again") from e


def extract_state_dict(obj: Any, keys: tuple[str, ...] = STATE_DICT_KEYS) -> dict[str, torch.Tensor]:
    """The model weights inside a checkpoint: the first of ``keys`` present, else the object itself.

    DiT training checkpoints hold "model"/"ema" (EMA preferred); MMPreTrain ones "state_dict".
    A DataParallel ``module.`` prefix is stripped.
    """
    sd = obj
    if isinstance(obj, Mapping):
        for k in keys:
            if k in obj and isinstance(obj[k], Mapping):
                sd = obj[k]
                break
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise UserError("checkpoint holds no state dict (expected tensors, or a dict with 'ema'/'state_dict'/'model')")
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return dict(sd)


def state_dict_mismatch(model: nn.Module, sd: Mapping[str, torch.Tensor]) -> tuple[list, list, list]:
    """(missing keys, unexpected keys, shape mismatches as (key, ckpt shape, model shape))."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [(k, tuple(sd[k].shape), tuple(v.shape)) for k, v in own.items() if k in sd and sd[k].shape != v.shape]
    return missing, unexpected, shapes


def load_state_dict_strict(model: nn.Module, sd: Mapping[str, torch.Tensor], what: str) -> None:
    """``load_state_dict(strict=True)`` with one readable error naming ``what`` and the mismatch."""
    missing, unexpected, shapes = state_dict_mismatch(model, sd)
    if missing or unexpected or shapes:

        def few(xs: list) -> str:
            return ", ".join(map(str, xs[:5])) + (f" (+{len(xs) - 5} more)" if len(xs) > 5 else "")

        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {few(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {few(unexpected)}")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches: {few(shapes)}")
        raise UserError(
            f"{what} does not match the model ({'; '.join(parts)}); check the model flags match this checkpoint"
        )
    model.load_state_dict(sd, strict=True)


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def cache_dir() -> Path:
    """This project's per-user cache: ``$SDA_CACHE_DIR``, default ``$XDG_CACHE_HOME/sda-tta`` (~/.cache/sda-tta)."""
    base = os.environ.get("SDA_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "sda-tta"
    )
    return Path(base)


def _hash_cache_path() -> Path:
    return cache_dir() / "sha256.json"


def cached_sha256(path: str | os.PathLike) -> str:
    """``file_sha256`` remembered by (absolute path, size, mtime, inode, ctime): a 2 GB checkpoint is hashed once.

    The cache lives in ``$SDA_CACHE_DIR`` (default ``~/.cache/sda-tta``). It assumes that a file whose size,
    modification time, inode and status-change time are all unchanged has unchanged content: replacing a file
    (another inode), writing it, or resetting its modification time afterwards (which changes its ctime, and
    ctime cannot be set back) makes it hashed again. An unwritable cache only costs the hashing.
    """
    path = Path(path).resolve()
    st = path.stat()
    cache_file = _hash_cache_path()
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    entry = cache.get(str(path))
    stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino, "ctime_ns": st.st_ctime_ns}
    if isinstance(entry, dict) and all(entry.get(k) == v for k, v in stamp.items()):
        return str(entry["sha256"])
    digest = file_sha256(path)
    cache[str(path)] = {**stamp, "sha256": digest}
    with contextlib.suppress(OSError, UserError):
        from sda.utils.io import write_json

        write_json(cache_file, cache)
    return digest


def content_sha256(path: str | os.PathLike) -> str:
    """The content hash of a file, or of a folder (its files' relative names and hashes, sorted)."""
    path = Path(path)
    if path.is_file():
        return cached_sha256(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
        h.update(f"{f.relative_to(path).as_posix()}\0{cached_sha256(f)}\n".encode())
    return h.hexdigest()


def state_dict_sha256(model: nn.Module) -> str:
    """A hash of a model's weights and buffers (names, dtypes, shapes, bytes): the identity of an in-memory model."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}\n".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
