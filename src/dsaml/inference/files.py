"""Predict arousal/valence curves at 2 Hz for songs of any length: CSV + JSON + PNG per file.

Files are decoded block by block and streamed through the sliding windows (`decoding.file_steps` ->
`StreamingPrediction`, the path `predict_long` takes too): memory holds about one window of steps, whatever the
song's length, and a background thread decodes ahead while the model computes. Windows of the training length
(`window_steps`) start every `config.hop_steps` and their overlapping predictions are blended. Windows of
several files run together in mini-batches of the size measured to pay on this machine (`batch_size`).
Step `i` covers `[i * 0.5 s, (i + 1) * 0.5 s)` and is reported at `time_seconds = i * 0.5` (its start, the
convention of the annotation files `dsaml personalize` reads, so a prediction can be corrected and fed back).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from dsaml.audio.blocks import file_steps
from dsaml.audio.reader import BLOCK_FRAMES
from dsaml.errors import AudioError
from dsaml.inference.batch_size import BatchSizeTuner
from dsaml.inference.loading import model_config
from dsaml.modeling.step_audio_dsaml import mono_waveform
from dsaml.utils.files import atomic_path, atomic_write_text
from dsaml.utils.plots import plot_curves

__all__ = ["predict_file", "predict_files", "predict_waveform", "write_prediction"]


def _frame(pieces: list[torch.Tensor], step_seconds: float):
    import pandas as pd

    out = torch.cat(pieces).numpy() if pieces else np.zeros((0, 2), dtype=np.float32)
    return pd.DataFrame({
        "time_seconds": np.arange(out.shape[0], dtype=np.float64) * step_seconds,
        "arousal": out[:, 0],
        "valence": out[:, 1],
    })


@torch.no_grad()
def _predict_steps(model, events: Iterator[tuple], *, window_steps: int | None, hop_steps: int | None,
                   batch_size: int | BatchSizeTuner | None, progress=None) -> Iterator[tuple[int, object]]:
    """`(index, DataFrame | AudioError)` in index order from `decoding.file_steps`-style events."""
    config = model_config(model)
    tuner = batch_size if isinstance(batch_size, BatchSizeTuner) else BatchSizeTuner() if batch_size is None else None
    batch_size = None if tuner is not None else batch_size
    model.eval()
    stream = model.streaming(window_steps or config.window_steps, hop_steps or config.hop_steps,
                             batch_size or 1, on_batch=tuner.record if tuner else None)
    songs: dict[int, tuple] = {}  # index -> (song handle, popped pieces) until yielded
    results: dict[int, object] = {}
    next_index = 0

    def ready() -> Iterator[tuple[int, object]]:
        nonlocal next_index
        while next_index in songs or next_index in results:
            if next_index in songs:
                song, pieces = songs[next_index]
                pieces.append(stream.pop(song))
                if not song.windows.done:
                    return
                results[next_index] = _frame(pieces, config.step_seconds)
                del songs[next_index]
            yield next_index, results.pop(next_index)
            next_index += 1

    for index, kind, payload in events:
        if tuner is not None:
            stream.batch_size = tuner.size()
        if kind == "steps":
            if index not in songs:
                songs[index] = (stream.open(), [])
            song, pieces = songs[index]
            stream.push(song, payload)
            pieces.append(stream.pop(song))
            if progress is not None:
                progress.update(payload["input_features"].shape[0] * config.step_seconds)
        elif kind == "end":
            stream.finish(songs[index][0])
        else:  # an unusable file: its windows are dropped, the error takes its place
            if index in songs:
                stream.cancel(songs.pop(index)[0])
            results[index] = payload
        yield from ready()
    stream.flush()
    yield from ready()


def predict_files(model, extractor, paths: Sequence[str | os.PathLike], *, window_steps: int | None = None,
                  hop_steps: int | None = None, batch_size: int | BatchSizeTuner | None = None,
                  background: bool = True, progress=None) -> Iterator[tuple[int, object]]:
    """Predict audio files (any length, block by block): yields `(index, DataFrame)` in input order, or
    `(index, AudioError)` naming a file that cannot be used. `batch_size` None measures the window batch size
    that pays (`dsaml.inference.batch_size`; pass a `BatchSizeTuner` to read its choice afterwards); `background`
    decodes in a thread ahead of the model; `progress` (a tqdm bar) is advanced by the audio seconds processed."""
    events = file_steps(paths, extractor, background=background)
    yield from _predict_steps(model, events, window_steps=window_steps, hop_steps=hop_steps, batch_size=batch_size,
                              progress=progress)


def predict_file(model, extractor, path: str | os.PathLike, window_steps: int | None = None,
                 hop_steps: int | None = None, *, batch_size: int = 1, background: bool = True):
    """Predict one audio file (any length); raises `AudioError` naming the file if it cannot be used."""
    (_, result), = predict_files(model, extractor, [path], window_steps=window_steps, hop_steps=hop_steps,
                                 batch_size=batch_size, background=background)
    if isinstance(result, AudioError):
        raise result
    return result


def predict_waveform(model, extractor, waveform: np.ndarray, sampling_rate: int, *, name: str = "audio",
                     window_steps: int | None = None, hop_steps: int | None = None):
    """Per-step predictions of one waveform (1-D, or 2-D channels-first): a DataFrame with `time_seconds`,
    `arousal`, `valence`; raises `AudioError` naming `name` if it cannot be used."""
    def events():
        try:
            wave = mono_waveform(waveform, name)
            if wave.numel() == 0:
                raise ValueError(f"{name}: audio is empty (0 samples)")
            stream = extractor.stream(sampling_rate, name=name)
            for first in range(0, wave.numel(), BLOCK_FRAMES):
                yield 0, "steps", stream.push_inputs(wave[first : first + BLOCK_FRAMES])
            yield 0, "steps", stream.flush_inputs()
        except ValueError as exc:
            yield 0, "error", AudioError(str(exc))
            return
        yield 0, "end", None

    (_, result), = _predict_steps(model, events(), window_steps=window_steps, hop_steps=hop_steps, batch_size=1)
    if isinstance(result, AudioError):
        raise result
    return result


def write_prediction(frame, output_dir: str | os.PathLike, stem: str, *, source: str = "", model: str = "",
                     user: str | None = None, step_seconds: float = 0.5, plot: bool = True) -> dict[str, Path]:
    """Write `<stem>.csv`, `<stem>.json` (and `<stem>.png`) into `output_dir`."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / f"{stem}.csv", "json": out / f"{stem}.json"}
    with atomic_path(paths["csv"]) as tmp:  # a result file appears whole or not at all
        frame.to_csv(tmp, index=False, float_format="%.6f")
    payload = {
        "file": source, "model": model, "user": user, "step_seconds": step_seconds, "num_steps": len(frame),
        "time_seconds": [round(float(x), 6) for x in frame["time_seconds"]],
        "arousal": [float(x) for x in frame["arousal"]],
        "valence": [float(x) for x in frame["valence"]],
    }
    atomic_write_text(paths["json"], json.dumps(payload))
    if plot:
        paths["png"] = plot_curves(frame, out / f"{stem}.png",
                                   title=f"{Path(source).name or stem}" + (f" (user {user})" if user else ""))
    return paths
