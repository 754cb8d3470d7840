"""Atomic outputs: every file is complete or absent (temporary name, then rename)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image

from sda.utils.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".webp": "WEBP"}


def write_error(path: str | os.PathLike, e: OSError) -> UserError:
    """One clear line for a failed write: a full disk says so (and that a rerun resumes)."""
    if e.errno == errno.ENOSPC or e.errno == errno.EDQUOT:
        return UserError(
            f"cannot write {path}: no space left on the device; free some space, then rerun the same "
            "command to resume (finished files are kept)"
        )
    return UserError(f"cannot write {path}: {e.strerror or e}; choose a writable output folder")


# The names of this project's temporary files: ".<name>.sda-<random>.tmp" beside the file being written. Only files
# with this mark are ever removed as a killed run's partials (sda.utils.runfolder), never another program's.
TMP_MARK = "sda-"


def remove_own_partials(path: str | os.PathLike) -> int:
    """Remove what an interrupted ``atomic_write(path)`` left beside ``path`` (``.<name>.sda-*.tmp``): files this
    project's writes of that very path made, and nothing else. Returns how many."""
    path = Path(path)
    n = 0
    for tmp in path.parent.glob(f".{path.name}.{TMP_MARK}*.tmp"):
        tmp.unlink(missing_ok=True)
        n += 1
    return n


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
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{TMP_MARK}", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise write_error(path, e) from e
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise write_error(path, e) from e
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


# PIL modes of 16-bit (and 32-bit integer) single-channel images: PNG stores 16-bit grey as "I;16" (or "I").
_WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def to_rgb(im: Image.Image) -> Image.Image:
    """An RGB copy of ``im``; 16-bit grey is scaled to 8 bits (x / 257, rounded), not clipped at 255."""
    if im.mode in _WIDE_MODES:
        wide = np.asarray(im, dtype=np.float64)  # (H, W) in 0..65535
        im = Image.fromarray(np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8), mode="L")
    return im.convert("RGB")


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Open an image as RGB; a corrupt or unreadable file is a UserError naming it."""
    try:
        with Image.open(path) as im:
            return to_rgb(im)
    except (OSError, SyntaxError, ValueError) as e:
        raise UserError(f"cannot read image {path}: {e}; remove or replace the file") from e


def class_folders(root: str | os.PathLike, fix: str = "check the path") -> list[str]:
    """The class folders under ``root`` in label order (sorted names, hidden ones skipped), as
    mmpretrain's CustomDataset orders them. A missing ``root`` is a UserError ending with ``fix``."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"image folder {root} does not exist; {fix}")
    return sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def check_writable_dir(path: str | os.PathLike, flag: str) -> Path:
    """Create ``path`` if needed and prove it takes a file, before any work: a UserError naming ``flag``."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check.", suffix=".tmp", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"{flag} {path} is not writable ({e.strerror or e}); choose a writable folder") from e
    return path


def check_writable_file(path: str | os.PathLike, flag: str) -> Path:
    """The folder of output file ``path`` is writable (and ``path`` is no folder), before any work."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder; give a file name")
    check_writable_dir(path.parent, flag)
    return path


def check_disjoint(inputs: str | os.PathLike, outputs: str | os.PathLike, in_flag: str, out_flag: str) -> None:
    """Refuse an output folder equal to, inside, or containing the input folder (a rerun would read its own
    outputs as inputs, or outputs would replace inputs)."""
    a, b = Path(inputs).resolve(), Path(outputs).resolve()
    if a == b or a in b.parents or b in a.parents:
        raise UserError(
            f"{out_flag} {outputs} overlaps {in_flag} {inputs}: outputs would mix with the inputs; "
            f"choose an output folder outside the input folder"
        )
