"""Whole-song predictions of aligned songs (sliding windows), as evaluation and personalization score them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from dsaml.data.alignment import AlignedSong
from dsaml.data.batches import collate

__all__ = ["predict_songs", "song_on"]


@torch.no_grad()
def predict_songs(model, songs: Sequence[AlignedSong], window_steps: int, hop_steps: int) -> list[np.ndarray]:
    """`[steps, 2]` predictions of whole songs (sliding windows), one song at a time."""
    model.eval()
    out = []
    for song in songs:
        batch = collate([song])
        pred = model.predict_long(
            batch["input_features"], global_input_values=batch.get("global_input_values"),
            harmonic_features=batch.get("harmonic_features"),
            window_steps=window_steps, hop_steps=hop_steps,
        )
        out.append(pred[0].float().cpu().numpy())
    return out


def song_on(song: AlignedSong, device) -> AlignedSong:
    """`song` with its model inputs on `device` (the labels stay on the CPU, where they are scored)."""
    if device is None:
        return song
    wave = song.waveform.to(device) if song.waveform is not None else None
    harmonic = song.harmonic.to(device) if song.harmonic is not None else None
    return AlignedSong(song.song_id, song.annotator, song.features.to(device), song.labels, song.start_step, wave,
                       harmonic)
