"""Writing files so that nothing half-written is ever left under a final name, readable like any other file.

`atomic_path` yields a temporary name beside the target and renames it over the target in one step on success
(removing it on failure). Temporary files are created 0600, and safetensors writes its files the same way, so
finished files get the permissions the umask gives ordinary files (`readable_mode`, `make_readable`).
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def readable_mode() -> int:
    """0o666 minus the process umask: the mode `open()` would give a new file."""
    return 0o666 & ~current_umask()


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside `path`; on success it replaces `path` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, readable_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def make_readable(folder: str | os.PathLike) -> None:
    """Give every file under `folder` the `readable_mode` (after libraries that write 0600 files)."""
    mode = readable_mode()
    for path in Path(folder).rglob("*"):
        if path.is_file():
            os.chmod(path, mode)


def check_output_folder(folder: str | os.PathLike) -> Path:
    """Fail at once, naming `folder`, if it cannot be an output folder: it is a file, or it (or, when it does
    not exist yet, its nearest existing parent) is not a writable folder. Nothing is created."""
    folder = Path(folder)
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        raise NotADirectoryError(f"{folder}: {existing} is a file, not a folder; cannot write output there")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"{folder}: {existing} is not writable; cannot write output there")
    return folder
