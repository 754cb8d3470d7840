"""Atomic outputs: every file is complete or absent (temporary name, then rename)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from PIL import Image

from sda.utils.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".webp": "WEBP"}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success fsync and rename it onto ``path``.

    On any exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror}; choose a writable output folder") from e
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def image_format(path: str | os.PathLike) -> str:
    """PIL format name from the file extension (as the reference writes by extension)."""
    ext = Path(path).suffix.lower()
    if ext not in _FORMATS:
        raise UserError(f"{path}: unknown image extension {ext!r}; use one of {sorted(_FORMATS)}")
    return _FORMATS[ext]


def save_image(img: Image.Image, path: str | os.PathLike, format: str | None = None, **kwargs: Any) -> None:
    """Save a PIL image atomically; the format follows the extension unless given."""
    fmt = format or image_format(path)
    with atomic_write(path) as f:
        img.save(f, format=fmt, **kwargs)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def list_images(root: str | os.PathLike) -> list[str]:
    """Sorted relative POSIX paths of every image below ``root`` (hidden temp files skipped)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"image folder {root} does not exist; check the path")
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = Path(dirpath).relative_to(root)
        out.extend((rel / n).as_posix() for n in filenames if is_image_file(n))
    return sorted(out)


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Open an image as RGB; a corrupt or unreadable file is a UserError naming it."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, SyntaxError, ValueError) as e:
        raise UserError(f"cannot read image {path}: {e}; remove or replace the file") from e


def class_folders(root: str | os.PathLike, fix: str = "check the path") -> list[str]:
    """The class folders under ``root`` in label order (sorted names, hidden ones skipped), as
    mmpretrain's CustomDataset orders them. A missing ``root`` is a UserError ending with ``fix``."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"image folder {root} does not exist; {fix}")
    return sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
