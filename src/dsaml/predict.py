"""Predict arousal/valence curves at 2 Hz for songs of any length: CSV + JSON + PNG per file.

Songs are cut into sliding windows of the training length (`window_steps`, every `inference_hop_steps`) and the
overlapping predictions blended (`DSAMLForDynamicEmotionRecognition.predict_long`). Step `i` covers
`[i * 0.5 s, (i + 1) * 0.5 s)` and is reported at `time_seconds = i * 0.5` (its start, the convention of the
annotation files `dsaml personalize` reads, so a prediction can be corrected and fed back).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from dsaml.audio import AudioError, load_audio
from dsaml.files import atomic_path, atomic_write_text

__all__ = ["predict_file", "predict_waveform", "write_prediction"]


def model_config(model):
    """The DSAML config of a model or of a PEFT model wrapping one."""
    return getattr(model, "config", None) or model.get_base_model().config


def predict_waveform(model, extractor, waveform: np.ndarray, sampling_rate: int, *, name: str = "audio",
                     window_steps: int | None = None, hop_steps: int | None = None):
    """Per-step predictions of one waveform: a DataFrame with `time_seconds`, `arousal`, `valence`."""
    import pandas as pd

    config = model_config(model)
    try:
        inputs = extractor(waveform, sampling_rate=sampling_rate, names=[name])
    except ValueError as exc:
        raise AudioError(str(exc)) from exc
    steps = int(inputs["input_features"].shape[1])
    if steps < 1:
        raise AudioError(f"{name}: shorter than one {config.step_seconds} s step")
    model.eval()
    with torch.no_grad():
        out = model.predict_long(
            inputs["input_features"], inputs["attention_mask"], global_input_values=inputs.get("global_input_values"),
            harmonic_features=inputs.get("harmonic_features"),
            window_steps=window_steps or config.window_steps, hop_steps=hop_steps or config.inference_hop_steps,
        )[0]
    out = out.float().cpu().numpy()
    return pd.DataFrame({
        "time_seconds": np.arange(steps, dtype=np.float64) * config.step_seconds,
        "arousal": out[:, 0],
        "valence": out[:, 1],
    })


def predict_file(model, extractor, path: str | os.PathLike, window_steps: int | None = None,
                 hop_steps: int | None = None):
    """Predict one audio file (any length); raises `AudioError` naming the file if it cannot be used."""
    waveform, rate = load_audio(path)
    return predict_waveform(model, extractor, waveform, rate, name=str(path), window_steps=window_steps,
                            hop_steps=hop_steps)


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
        from dsaml.plots import plot_curves

        paths["png"] = plot_curves(frame, out / f"{stem}.png",
                                   title=f"{Path(source).name or stem}" + (f" (user {user})" if user else ""))
    return paths
