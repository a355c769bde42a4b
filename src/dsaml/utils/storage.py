"""Where personalized models live: the user-name rule, and folders that appear whole or not at all.

A user's adapter (`<adapters_dir>/<user>/`) or personalized model folder is written to a hidden temporary folder
beside its final place and renamed into place under a per-folder lock (`filelock`, a `.<name>.lock` file beside
the folder), so a reader never sees a mix of two writes, two writers never interleave, and an interrupted write
leaves nothing under the final name. Readers take the same lock for the moment they load. An existing folder
is replaced only when asked (`overwrite=True`), and then in one swap: the old folder is renamed away, the new one
renamed in, the old one removed.

The user name is a path component and a PEFT adapter name (a module-dict key, where dots are not allowed), so
it is restricted to a small portable alphabet, checked before any work is done.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from dsaml.errors import FolderExistsError, UserNameError
from dsaml.utils.files import check_output_folder, current_umask

__all__ = ["USER_NAME_RULE", "FolderExistsError", "UserNameError", "check_target", "check_user", "folder_lock",
           "reading", "write_folder"]

USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
USER_NAME_RULE = "1 to 64 letters, digits, '_' or '-', starting with a letter or digit"
LOCK_TIMEOUT = 120.0  # seconds a writer or reader waits for another process's write of the same folder


def check_user(user: str) -> str:
    """`user` if it follows `USER_NAME_RULE`; otherwise `UserNameError` naming it and the rule."""
    if not isinstance(user, str) or not USER_NAME.fullmatch(user):
        shown = user if not isinstance(user, str) or len(user) <= 80 else user[:77] + "..."
        raise UserNameError(f"user name {shown!r} is not allowed: use {USER_NAME_RULE}")
    return user


def _lock_path(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.lock"


def folder_lock(folder: str | os.PathLike):
    """The lock serializing writers (and readers) of `folder`: a hidden `.<name>.lock` file beside it."""
    from filelock import FileLock

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(_lock_path(folder)), timeout=LOCK_TIMEOUT)


def reading(folder: str | os.PathLike):
    """The writers' lock of `folder` while it is read, where a writer has ever made one (so reading creates no
    file); a folder written once and never replaced needs none: its rename into place is atomic."""
    folder = Path(folder)
    return folder_lock(folder) if _lock_path(folder).is_file() else contextlib.nullcontext()


def check_target(folder: str | os.PathLike, *, overwrite: bool, what: str = "folder") -> Path:
    """Fail before any work if `folder` cannot become the output: it is a file, it exists and `overwrite` is
    off, or its parent cannot be created or written."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder}: exists and is not a folder; cannot write the {what} there")
    if folder.exists() and not overwrite:
        raise FolderExistsError(f"{folder}: the {what} exists; pass --overwrite (overwrite=True) to replace it")
    check_output_folder(folder.parent)
    return folder


@contextmanager
def write_folder(folder: str | os.PathLike, *, overwrite: bool = False, what: str = "folder"):
    """Yield an empty hidden temporary folder beside `folder`; on success it becomes `folder` in one rename
    (replacing an existing one only with `overwrite`), under `folder_lock`. On any error it is removed."""
    folder = check_target(folder, overwrite=overwrite, what=what)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700 folders; a saved model should be readable like others
    try:
        yield tmp
        with folder_lock(folder):
            check_target(folder, overwrite=overwrite, what=what)  # another process may have written it meanwhile
            old = None
            if folder.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".old", dir=folder.parent))
                os.replace(folder, old / folder.name)
            os.replace(tmp, folder)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
