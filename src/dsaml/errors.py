"""Every exception dsaml raises on purpose, in one place at the bottom of the package (standard library only).

Each one is a `ValueError` (or the `OSError` / `KeyError` a caller would expect) whose message names the input
and what is wrong with it. `expected_errors` adds the libraries' exceptions for bad files, which the command line
(`dsaml.commands.boundary`) and the demo page show as one line (`one_line`); anything else is a bug.
"""

from __future__ import annotations

import csv

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
    "expected_errors",
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


def expected_errors() -> tuple[type[BaseException], ...]:
    """The exception types bad input raises (third-party ones imported when an error is caught: `dsaml --help`
    must not import them)."""
    import yaml
    from huggingface_hub.errors import StrictDataclassError  # an invalid DSAMLConfig value
    from safetensors import SafetensorError

    return ValueError, OSError, csv.Error, yaml.YAMLError, SafetensorError, StrictDataclassError, UnknownUserError


def one_line(exc: BaseException) -> str:
    """The message of `exc` on one line (library messages sometimes span several). A strict dataclass's
    validation error (huggingface_hub) wraps the error its validator raised: that error's message is the one
    that names the field."""
    while type(exc).__name__.startswith("StrictDataclass") and exc.__cause__ is not None:
        exc = exc.__cause__
    text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
    return text or type(exc).__name__
