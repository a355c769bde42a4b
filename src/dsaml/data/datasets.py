"""Reading dsaml dataset folders (the format `dsaml prepare` writes; see `dsaml.datasets_scripts.common.schema`).

Training, personalization and evaluation code go through here: `dataset_root` turns a local folder, a Hub
dataset repo id, or the special name "synthetic" into a local folder; `load_pdmer` / `load_dmer` load a
config with `datasets.load_dataset`; `resolve_audio` finds a row's audio file; `annotator_songs` groups rows
by annotator for task sampling. `datasets` and `huggingface_hub` are imported only when used (fast CLI start).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from dsaml.datasets_scripts.common.schema import annotator_split_name as name
from dsaml.datasets_scripts.synthetic.synthetic import GENERATOR_VERSION, build_synthetic, spec_for
from dsaml.errors import AudioError
from dsaml.utils.cache import cache_root

if TYPE_CHECKING:  # pragma: no cover
    import datasets

__all__ = [
    "DEFAULT_SYNTHETIC_SIZE",
    "SYNTHETIC",
    "annotator_songs",
    "annotator_split_name",
    "cache_root",
    "dataset_metadata",
    "dataset_root",
    "default_synthetic_dataset",
    "load_dmer",
    "load_pdmer",
    "resolve_audio",
]

SYNTHETIC = "synthetic"  # `dataset_root("synthetic")` / "synthetic:<size>" / "synthetic:<size>:<seed>"
DEFAULT_SYNTHETIC_SIZE = "small"
_SYNTHETIC_SPEC = re.compile(r"^synthetic(?::(?P<size>\w+))?(?::(?P<seed>\d+))?$")


def default_synthetic_dataset(cache_dir: str | os.PathLike | None = None, size: str = DEFAULT_SYNTHETIC_SIZE,
                              seed: int = 0, progress: bool = False) -> Path:
    """The embedded default dataset: the synthetic set of `size` and `seed`, built on first use and reused.

    The folder is keyed by size, seed and generator version, built in a temporary folder and renamed into
    place, under a file lock, so concurrent processes (e.g. distributed training ranks) build it once and
    nobody ever sees a half-written folder.
    """
    from filelock import FileLock

    spec_for(size)  # unknown sizes fail before anything is created
    root = Path(cache_dir).expanduser() if cache_dir is not None else cache_root() / "datasets"
    target = root / f"synthetic-{size}-seed{int(seed)}-v{GENERATOR_VERSION}"
    if (target / "README.md").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "README.md").is_file():  # another process finished while we waited
            return target
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
        try:
            build_synthetic(staging / "data", size=size, seed=int(seed), progress=progress)
            if target.exists():  # leftover of an interrupted build (no README): replace it
                shutil.rmtree(target)
            os.replace(staging / "data", target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def dataset_root(path_or_repo: str | os.PathLike, *, revision: str | None = None,
                 cache_dir: str | os.PathLike | None = None) -> Path:
    """The local folder of a dataset.

    - an existing local folder: returned as is;
    - "synthetic", "synthetic:<size>" or "synthetic:<size>:<seed>": the embedded synthetic set (built once);
    - otherwise a Hub dataset repo id: downloaded (Parquet files and audio) with
      `huggingface_hub.snapshot_download(repo_type="dataset")` into the Hub cache (or `cache_dir`).
    """
    local = Path(path_or_repo).expanduser()
    if local.is_dir():
        return local.resolve()
    text = str(path_or_repo)
    match = _SYNTHETIC_SPEC.match(text)
    if match:
        return default_synthetic_dataset(size=match["size"] or DEFAULT_SYNTHETIC_SIZE, seed=int(match["seed"] or 0))
    if text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text:  # a path, not "owner/name"
        raise FileNotFoundError(f"dataset folder {text} not found (and it is not a Hub repo id)")
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo_id=text, repo_type="dataset", revision=revision, cache_dir=cache_dir))


def load_pdmer(path_or_repo: str | os.PathLike, config: str = "pdmer_flat", split: str | None = None,
               **kwargs) -> datasets.Dataset | datasets.DatasetDict:
    """`datasets.load_dataset` on the dataset's local folder (see `dataset_root`).

    `config`: "pdmer_flat" (splits train/test, one row per (song, annotator); the fast way to read all
    annotators), "pdmer" (one split per annotator, `annotator_split_name(id)`) or "dmer". `kwargs` go to
    `load_dataset` (e.g. `cache_dir`).
    """
    import datasets

    root = dataset_root(path_or_repo, revision=kwargs.pop("revision", None))
    return datasets.load_dataset(str(root), config, split=split, **kwargs)


def load_dmer(path_or_repo: str | os.PathLike, split: str | None = None, **kwargs):
    """The averaged annotations (`dmer` config: splits train / validation / test)."""
    return load_pdmer(path_or_repo, "dmer", split=split, **kwargs)


def annotator_split_name(annotator: str) -> str:
    """The `pdmer` split of an annotator id (the builders add `_2`, `_3` only if two ids sanitize alike)."""
    return name(annotator)


def resolve_audio(root: str | os.PathLike, audio: str) -> Path:
    """The file a row's `audio` value points to: relative to the dataset folder, or absolute (datasets built
    with `audio_mode="reference"`). Raises `AudioError` naming the file when it is missing or empty."""
    if not audio:
        raise AudioError(f"{root}: this row has no audio (the dataset was built with require_audio=False)")
    path = Path(audio)
    if not path.is_absolute():
        # Lexical check (no symlink resolution): a Hub snapshot's files are symlinks into the cache's blobs/
        # folder, outside the snapshot folder, and must resolve; a `..` in a row's path must not.
        base = Path(os.path.abspath(root))
        path = Path(os.path.abspath(base / path))
        if base not in path.parents:  # a Hub dataset must not make us read files outside its folder
            raise AudioError(f"{audio}: audio path escapes the dataset folder {base}")
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found")
    return path


def annotator_songs(dataset) -> dict[str, list[int]]:
    """annotator id -> indices of that annotator's rows in `dataset` (row order kept), for task sampling."""
    column = dataset["annotator"]
    groups: dict[str, list[int]] = {}
    for index, annotator in enumerate(column):
        groups.setdefault(annotator, []).append(index)
    return groups


def dataset_metadata(root: str | os.PathLike) -> dict:
    """The folder's `build_report.json` (value range, options, counts, drops); {} when absent."""
    path = Path(root) / "build_report.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))
