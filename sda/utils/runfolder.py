"""One way to claim a run's output folder: its settings key, refusal of a mismatch, pending work, partials.

Every stage that writes a folder (gen, align, the mini benchmark) resumes by rerunning the same
command. What makes that safe is the folder's *key*: the settings that change an output. The key is
stored in a JSON file of the folder (the stage's manifest, under ``section``, or the whole file); a
later run with another key is refused with one line naming the settings that differ, so outputs of
two settings never mix. Outputs are written atomically (``sda.utils.io``), so an output that exists
is complete; a run killed mid-write leaves only hidden ``.<name>.sda-*.tmp`` files, which the next claim removes
(only files with this project's mark, and none below a subfolder that another live run has locked).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from sda.utils.errors import UserError
from sda.utils.io import TMP_MARK, write_error, write_json

T = TypeVar("T")
PARTIAL_GLOB = f"**/.*.{TMP_MARK}*.tmp"  # what sda.utils.io.atomic_write leaves behind when a process is killed
LOCK_NAME = ".lock"


def _process_start(pid: int) -> str | None:
    """The start time of a process (clock ticks since boot, /proc), to tell a live pid from a reused one."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22 of proc(5), counted after the command name


def _alive(holder: dict[str, Any]) -> bool:
    """Whether the process that wrote a lock still runs (assumed so when it runs on another host)."""
    if holder.get("host") != socket.gethostname():
        return True
    pid = int(holder.get("pid", -1))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    start = holder.get("start")
    return start is None or _process_start(pid) in (None, start)


def _held(lock: Path) -> bool:
    """Whether a lock file belongs to a live run (an unreadable one is taken as live: it is being written)."""
    try:
        holder = json.loads(lock.read_text())
    except (OSError, ValueError):
        return True
    return _alive(holder)


class FolderLock:
    """``<root>/.lock`` with the host and pid of the run that writes the folder; a dead holder's lock is taken over."""

    def __init__(self, root: Path):
        self.path = root / LOCK_NAME
        self.held = False

    def acquire(self) -> None:
        me = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "start": _process_start(os.getpid()),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    holder = json.loads(self.path.read_text())
                except (OSError, ValueError):
                    holder = {}  # written by a run killed between creating and filling it
                if holder and _alive(holder):
                    raise UserError(
                        f"{self.path.parent} is being written by another run (pid {holder.get('pid')} on "
                        f"{holder.get('host')}, since {holder.get('since')}); wait for it to finish, or delete "
                        f"{self.path} if that run is gone"
                    ) from None
                self.path.unlink(missing_ok=True)  # stale: its run died
                continue
            except OSError as e:
                raise write_error(self.path, e) from e
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return
        raise UserError(f"cannot take {self.path}: other runs keep taking it; run one at a time")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def _short(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


_ABSENT = "<absent>"


def key_mismatch(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted name, old value, new value) of every setting of ``new`` that differs from ``old``.

    Nested dicts are compared entry by entry, so the name says which entry changed (``sha256.model.pt``).
    """
    out = []
    for k, v in new.items():
        was = old.get(k, _ABSENT)
        if isinstance(v, Mapping) and isinstance(was, Mapping):
            out += key_mismatch(was, v, f"{prefix}{k}.")
        elif was != v:
            out.append((f"{prefix}{k}", was, v))
    return out


class RunFolder:
    """A run's output folder, claimed with the key of the settings that change its outputs.

    :param root: the folder.
    :param key: every output-affecting setting (JSON-serialisable values).
    :param key_file: the JSON file of ``root`` that holds the key.
    :param section: the entry of that file that holds the key (``None``: the whole file).
    :param fix: the advice appended to a refusal (which flag to change).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        key: Mapping[str, Any],
        key_file: str,
        section: str | None = "settings",
        fix: str = "use another output folder, or the same settings to resume",
    ):
        self.root = Path(root)
        self.key = dict(key)
        self.key_path = self.root / key_file
        self.section = section
        self.fix = fix
        self.lock = FolderLock(self.root)

    def stored_key(self) -> dict[str, Any] | None:
        """The key stored by an earlier run, or None (no file, or a file that is not ours to read)."""
        if not self.key_path.is_file():
            return None
        try:
            data = json.loads(self.key_path.read_text())
        except (OSError, ValueError):
            return None
        if self.section is not None:
            data = data.get(self.section) if isinstance(data, dict) else None
        return data if isinstance(data, dict) else None

    def check(self) -> None:
        """Refuse a folder made with another key (one line naming each differing setting), and a non-empty folder
        that no run of this project made (no key file): its files are not ours to mix with, or to clean."""
        old = self.stored_key()
        if old is None:
            if (
                self.root.is_dir()
                and not self.key_path.exists()
                and any(not p.name.startswith(".") for p in self.root.iterdir())
            ):
                raise UserError(
                    f"{self.root} is not empty and no run of this project wrote it (it has no {self.key_path.name}); "
                    "choose a new or empty output folder"
                )
            return
        changed = key_mismatch(old, self.key)
        if changed:
            what = ", ".join(f"{k}: {_short(a)} -> {_short(b)}" for k, a, b in changed)
            raise UserError(f"{self.root} holds outputs made with other settings ({what}); {self.fix}")

    def claim(self, record: Mapping[str, Any] | None = None) -> int:
        """Take the folder's lock, check the key, remove partial files, write the key file.

        ``record``: the whole key file to write (it must hold the key under ``section``); by default
        the key alone. Returns the number of partial files removed. Call :meth:`release` when done
        (a killed run's lock is recognised as stale and taken over).
        """
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise write_error(self.root, e) from e
        self.lock.acquire()
        try:
            self.check()
            removed = self.remove_partials()
            if record is None:
                record = self.key if self.section is None else {self.section: self.key}
            write_json(self.key_path, dict(record))
        except BaseException:
            self.lock.release()
            raise
        return removed

    def release(self) -> None:
        """Give the folder's lock back (the end of a run, successful or not)."""
        self.lock.release()

    def remove_partials(self) -> int:
        """Delete the temporary files an interrupted run of this project left (complete outputs are kept): only
        names with this project's mark, and none inside a subfolder that a live run holds (its own lock)."""
        live = [lock.parent for lock in self.root.glob(f"**/{LOCK_NAME}") if lock.parent != self.root and _held(lock)]
        n = 0
        for tmp in self.root.glob(PARTIAL_GLOB):
            if any(d in tmp.parents for d in live):
                continue
            tmp.unlink(missing_ok=True)
            n += 1
        return n


@contextlib.contextmanager
def claimed(folders: Iterable[RunFolder]) -> Any:
    """Release every folder of ``folders`` (claimed or not) when the block ends."""
    folders = list(folders)
    try:
        yield folders
    finally:
        for f in folders:
            f.release()


def pending(items: Iterable[T], output_of: Callable[[T], Path]) -> list[T]:
    """The items whose output file does not exist yet (outputs are atomic: present means complete)."""
    return [item for item in items if not output_of(item).exists()]
