"""Per-song step features, computed once: what makes sampling thousands of tasks cheap.

A meta-training run draws the same songs again and again (every annotator of a song, every outer step). The
store decodes each audio file once, turns it into the model's per-step inputs (log-mel patches, or the
dataset's precomputed frame features) and hands out `AlignedSong`s (row -> that annotator's labels on those
features) without copying the features. Every error names the song, the annotator and the file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from dsaml.audio.reader import load_audio
from dsaml.data.alignment import AlignedSong, align
from dsaml.data.datasets import resolve_audio
from dsaml.errors import AnnotationError, AudioError, SongStoreError
from dsaml.modeling import DSAMLConfig, DSAMLFeatureExtractor
from dsaml.modeling.step_audio_dsaml import step_samples


class SongStore:
    """Aligned (song, annotator) examples of a dataset split, with each song's audio decoded once.

    Args:
        rows: the dataset rows (a `datasets.Dataset` of the dsaml row format, or a list of dicts).
        root: the dataset folder (audio paths are relative to it).
        config: the model config (front end, input type, global encoder).
        value_range: the dataset's label range (`dataset_metadata(root)["value_range"]`), checked per row.
    """

    def __init__(self, rows, root: str | Path, config: DSAMLConfig,
                 value_range: tuple[float, float] | None = (-1.0, 1.0)) -> None:
        self.rows = rows
        self.root = Path(root)
        self.config = config
        self.value_range = tuple(value_range) if value_range is not None else None
        self.extractor = DSAMLFeatureExtractor.from_model_config(config)
        # audio path -> (patches, waveform, harmonic view)
        self._songs: dict[str, tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]] = {}
        self._aligned: dict[int, AlignedSong] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def _row(self, index: int) -> Mapping:
        return self.rows[int(index)]

    @staticmethod
    def describe(row: Mapping) -> str:
        return f"song {row['song_id']!r}, annotator {row['annotator']!r}, file {row.get('audio') or '<none>'!r}"

    def _song_inputs(self, row: Mapping) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        key = row["audio"]
        if key not in self._songs:
            try:
                path = resolve_audio(self.root, key)
                audio, rate = load_audio(path)
                wave = self.extractor.prepare_waveform(audio, rate, name=str(path))
                patches = self.extractor.log_mel_patches(wave)
                waveform = harmonic = None
                if self.config.global_encoder == "pretrained":  # global_input_values: the song at the model rate
                    waveform = step_samples(wave, 0, patches.shape[0], self.extractor.samples_per_step)
                if self.config.harmonic_features:
                    harmonic = self.extractor.harmonic_patches(wave)
            except (AudioError, ValueError) as exc:
                raise SongStoreError(f"{self.describe(row)}: {exc}") from exc
            self._songs[key] = (patches, waveform, harmonic)
        return self._songs[key]

    def song(self, index: int) -> AlignedSong:
        """Row `index` as an aligned song (cached; features are views of the song's shared patches)."""
        index = int(index)
        if index not in self._aligned:
            row = self._row(index)
            try:
                if self.config.input_type == "frame_features":
                    if "features" not in row:
                        raise SongStoreError(
                            f"{self.describe(row)}: input_type='frame_features' needs a `features` column "
                            "(build the dataset with precomputed features)"
                        )
                    features = torch.tensor(row["features"], dtype=torch.float32)
                    step = self.config.step_seconds
                    song = align(
                        torch.cat([features.new_zeros(int(round(row["start_seconds"] / step)), features.shape[1]),
                                   features]),
                        arousal=row["arousal"], valence=row["valence"], start_seconds=row["start_seconds"],
                        frame_rate=row["frame_rate"], step_seconds=step, song_id=row["song_id"],
                        annotator=row["annotator"], value_range=self.value_range,
                    )
                else:
                    patches, waveform, harmonic = self._song_inputs(row)
                    song = align(
                        patches, arousal=row["arousal"], valence=row["valence"], start_seconds=row["start_seconds"],
                        frame_rate=row["frame_rate"], step_seconds=self.config.step_seconds, song_id=row["song_id"],
                        annotator=row["annotator"], value_range=self.value_range, waveform=waveform,
                        harmonic=harmonic,
                    )
            except AnnotationError as exc:
                raise SongStoreError(f"{exc} (file {row.get('audio') or '<none>'!r})") from exc
            self._aligned[index] = song
        return self._aligned[index]

    def songs(self, indices: Sequence[int]) -> list[AlignedSong]:
        return [self.song(i) for i in indices]

    def preload(self, indices: Sequence[int] | None = None, progress: bool = False) -> None:
        """Decode and align every row in `indices` (default: all) now, so errors surface before training."""
        from tqdm.auto import tqdm

        indices = range(len(self)) if indices is None else indices
        for i in tqdm(indices, desc="decoding songs", disable=not progress, leave=False):
            self.song(i)
