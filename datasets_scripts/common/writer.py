"""Writing a Hub-ready dataset folder:

    <output>/
      README.md                 YAML `configs:` (one Parquet file per split) + the dataset card
      build_report.json         options, row counts, everything dropped and why
      audio/<song_id>.<ext>     each song's audio once, shared by all its rows (copy mode)
      <config>/<split>-00000-of-00001.parquet

`datasets.load_dataset(<output>, <config>)` reads it locally (no loading script: datasets 5 refuses them), and
`HfApi().upload_folder(repo_type="dataset")` publishes it as is, audio included. Every file is written to a
temporary name and moved into place with `os.replace`, so an interrupted build never leaves a truncated file
under a final name. Nothing is written or deleted through a symbolic link inside the folder: a linked `audio/`
or config folder would carry the build's writes and its clean-up of stale files out of the folder the user named,
so it is refused before anything is touched.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from dsaml.datasets_scripts.common.card import CardInfo, render_card
from dsaml.datasets_scripts.common.report import DropReport, logger
from dsaml.datasets_scripts.common.schema import CONFIG_NAMES, Record, audio_file_stem, records_to_table
from dsaml.datasets_scripts.common.splits import id_order
from dsaml.errors import DatasetBuildError
from dsaml.utils.files import atomic_path, atomic_write_text

AUDIO_DIR = "audio"
REPORT_FILE = "build_report.json"
AUDIO_MODES = ("copy", "reference")
_OWNED = ("README.md", REPORT_FILE)  # files a previous dsaml build wrote (removed on overwrite)


def is_dsaml_folder(folder: Path) -> bool:
    try:
        report = json.loads((folder / REPORT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(report, dict) and report.get("generator") == "dsaml"


class DatasetFolderWriter:
    """Collects audio and configs of one dataset folder, then writes the card and report with `finish`."""

    def __init__(self, output: str | os.PathLike, *, audio_mode: str = "copy", overwrite: bool = False,
                 progress: bool = False):
        if audio_mode not in AUDIO_MODES:
            raise ValueError(f"audio_mode must be one of {AUDIO_MODES}, got {audio_mode!r}")
        self.output = Path(output).expanduser().resolve()
        self.audio_mode = audio_mode
        self.progress = progress
        self.audio_paths: dict[str, str] = {}  # song_id -> value of the `audio` column
        self.configs: dict[str, dict[str, int]] = {}  # config -> split -> rows
        self.config_files: dict[str, dict[str, str]] = {}  # config -> split -> relative parquet path
        self.default_config: str | None = None
        self.with_features = False
        self._prepare(overwrite)

    def _prepare(self, overwrite: bool) -> None:
        if self.output.exists() and not self.output.is_dir():
            raise DatasetBuildError(f"output {self.output} exists and is not a folder")
        previous = {}
        if (self.output / REPORT_FILE).is_file() and is_dsaml_folder(self.output):
            previous = json.loads((self.output / REPORT_FILE).read_text(encoding="utf-8"))
        configs = previous.get("configs") if isinstance(previous.get("configs"), dict) else {}
        self._refuse_links([AUDIO_DIR, *CONFIG_NAMES, *(c for c in configs if isinstance(c, str))])
        if self.output.is_dir() and any(self.output.iterdir()):
            if not overwrite:
                raise DatasetBuildError(
                    f"output folder {self.output} is not empty; pass overwrite=True (--overwrite) to rebuild it"
                )
            if not is_dsaml_folder(self.output):
                raise DatasetBuildError(
                    f"output folder {self.output} is not empty and was not written by dsaml "
                    f"(no {REPORT_FILE}); refusing to overwrite it"
                )
            # Configs and card of the previous build go; audio/ stays so unchanged files are not copied again.
            for config in configs:
                folder = self._own_subfolder(config)
                if folder is not None:
                    shutil.rmtree(folder, ignore_errors=True)
            for name in _OWNED:
                (self.output / name).unlink(missing_ok=True)
        self.output.mkdir(parents=True, exist_ok=True)

    def _refuse_links(self, names) -> None:
        """A `DatasetBuildError` naming the first of the folder's entries `names` that is a symbolic link."""
        for name in names:
            if not name or "/" in name or "\\" in name or name in {".", ".."}:
                continue  # not an entry of the folder (a tampered report); `_own_subfolder` ignores it too
            path = self.output / name
            if path.is_symlink():
                raise DatasetBuildError(
                    f"{path} is a symbolic link (to {os.readlink(path)}): dsaml writes and deletes only inside the "
                    "dataset folder, never through a link; remove the link or choose another output folder")

    def _own_subfolder(self, config: str) -> Path | None:
        """The config's folder when it is a direct subfolder of the output; the report is only a file in the
        folder, so a name in it that points anywhere else (`../x`, `/x`, `a/b`, a symlink) deletes nothing."""
        if not isinstance(config, str) or not config or config in {".", ".."} or "/" in config or "\\" in config:
            return None
        folder = self.output / config
        if folder.is_symlink() or folder.resolve().parent != self.output:
            return None
        return folder

    # -- audio ---------------------------------------------------------------------------------------------
    def add_audio_files(self, files: dict[str, Path]) -> None:
        """Copy (or reference) each song's source audio file."""
        from tqdm.auto import tqdm

        items = sorted(files.items())
        desc = "copying audio" if self.audio_mode == "copy" else "referencing audio"
        for song_id, source in tqdm(items, desc=desc, unit="file", disable=not self.progress):
            source = Path(source).resolve()
            if self.audio_mode == "reference":
                self.audio_paths[song_id] = source.as_posix()
                continue
            self._refuse_links([AUDIO_DIR])
            relative = f"{AUDIO_DIR}/{audio_file_stem(song_id)}{source.suffix.lower()}"
            target = self.output / relative
            if not (target.is_file() and target.stat().st_size == source.stat().st_size):
                with atomic_path(target) as tmp:
                    shutil.copyfile(source, tmp)
            self.audio_paths[song_id] = relative

    def add_audio_array(self, song_id: str, waveform: np.ndarray, sample_rate: int) -> None:
        """Write generated audio as 16-bit FLAC (lossless, about half the size of WAV, decoded by soundfile)."""
        import soundfile as sf

        self._refuse_links([AUDIO_DIR])
        relative = f"{AUDIO_DIR}/{audio_file_stem(song_id)}.flac"
        with atomic_path(self.output / relative) as tmp:
            sf.write(tmp, np.asarray(waveform, dtype=np.float32), int(sample_rate), format="FLAC", subtype="PCM_16")
        self.audio_paths[song_id] = relative

    # -- configs -------------------------------------------------------------------------------------------
    def write_config(
        self, name: str, splits: dict[str, list[Record]], *, with_features: bool = False, default: bool = False
    ) -> dict[str, int]:
        """One Parquet file per non-empty split, rows sorted by (annotator, song id) for stable output."""
        self._refuse_links([name])
        counts: dict[str, int] = {}
        files: dict[str, str] = {}
        for split, records in splits.items():
            if not records:
                logger.info("config %s: split %s is empty and is left out", name, split)
                continue
            missing = sorted({r.song_id for r in records} - set(self.audio_paths))
            if missing:
                raise DatasetBuildError(f"config {name}, split {split}: no audio registered for songs {missing[:5]}")
            records = sorted(records, key=lambda r: (r.annotator, id_order(r.song_id)))
            table = records_to_table(records, self.audio_paths, with_features)
            relative = f"{name}/{split}-00000-of-00001.parquet"
            with atomic_path(self.output / relative) as tmp:
                pq.write_table(table, tmp, compression="zstd")
            counts[split] = len(records)
            files[split] = relative
        if not counts:
            raise DatasetBuildError(f"config {name}: no rows left to write (see the build report)")
        self.configs[name] = counts
        self.config_files[name] = files
        self.with_features = self.with_features or with_features
        if default or self.default_config is None:
            self.default_config = name
        return counts

    # -- card and report -----------------------------------------------------------------------------------
    def finish(self, card: CardInfo, report: DropReport, summary: dict) -> Path:
        """Write README.md and build_report.json, remove audio no row uses, log the drop summary."""
        if self.audio_mode == "copy":
            self._refuse_links([AUDIO_DIR])
            used = {Path(p).name for p in self.audio_paths.values()}
            audio_dir = self.output / AUDIO_DIR
            for stale in (audio_dir.iterdir() if audio_dir.is_dir() else []):
                if stale.name not in used and stale.is_file() and not stale.is_symlink():
                    stale.unlink()
        body = {
            "generator": "dsaml",
            **summary,
            "audio_mode": self.audio_mode,
            "configs": self.configs,
            "default_config": self.default_config,
            "value_range": list(card.value_range),
            **report.to_dict(),
        }
        atomic_write_text(self.output / REPORT_FILE, json.dumps(body, indent=2, sort_keys=False, default=str) + "\n")
        text = render_card(
            card, self.config_files, self.configs, self.default_config, report, self.audio_mode, self.with_features
        )
        atomic_write_text(self.output / "README.md", text)
        report.log_summary()
        logger.info("wrote %s (%s)", self.output, ", ".join(f"{c}: {sum(s.values())} rows" for c, s in self.configs.items()))
        return self.output
