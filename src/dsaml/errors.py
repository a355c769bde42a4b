"""Every exception dsaml raises on purpose, in one place at the bottom of the package (standard library only).

Each one is a `ValueError` (or the `OSError` / `KeyError` a caller would expect) whose message names the input
and what is wrong with it; `dsaml.commands.boundary` prints them as one line. `one_line` flattens a message.
"""

from __future__ import annotations

__all__ = [
    "AdapterError",
    "AnnotationError",
    "AudioError",
    "ConfigError",
    "CurveError",
    "DatasetBuildError",
    "FolderExistsError",
    "MidiError",
    "SongStoreError",
    "TaskError",
    "UnknownUserError",
    "UserNameError",
    "one_line",
]


class AudioError(ValueError):
    """Audio that cannot be used: the message names the file (or the given name) and what is wrong with it."""


class AnnotationError(ValueError):
    """An annotation curve that cannot be used: names the file, or the song and annotator, and what is wrong."""


class SongStoreError(ValueError):
    """A dataset row whose audio or annotation cannot be turned into model inputs."""


class TaskError(ValueError):
    """Annotators or splits that cannot form the requested tasks."""


class ConfigError(ValueError):
    """A model, personalization or training setting outside what it may be: names the field and its bound."""


class AdapterError(ValueError):
    """An adapter that cannot be applied (another base model, missing or broken files, ...)."""


class UnknownUserError(KeyError):
    """A user with no adapter in the adapter folder; the message lists the known users."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class UserNameError(ValueError):
    """A user name outside `dsaml.utils.storage.USER_NAME_RULE`."""


class FolderExistsError(FileExistsError):
    """The user's folder exists and replacing it was not asked for."""

    def __str__(self) -> str:  # FileExistsError would format (errno, strerror)
        return str(self.args[0])


class DatasetBuildError(ValueError):
    """A source that cannot be turned into a dataset; the message names the file / song / annotator."""


class MidiError(ValueError):
    """A MIDI file that cannot be read; the message names the file."""


class CurveError(ValueError):
    """A source row whose values cannot be a curve; `reason` is the drop-report reason."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{detail}: {reason}")
        self.reason = reason
        self.detail = detail


def one_line(exc: BaseException) -> str:
    """The message of `exc` on one line (library messages sometimes span several)."""
    text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
    return text or type(exc).__name__
