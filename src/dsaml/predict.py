"""Predict arousal/valence curves at 2 Hz for songs of any length: CSV + JSON + PNG per file.

Songs are cut into sliding windows of the training length (`window_steps`, every `inference_hop_steps`) and the
overlapping predictions blended (`DSAMLForDynamicEmotionRecognition.predict_long`). Step `i` covers
`[i * 0.5 s, (i + 1) * 0.5 s)` and is reported at `time_seconds = i * 0.5` (its start, the convention of the
annotation files `dsaml personalize` reads, so a prediction can be corrected and fed back).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from dsaml.audio import AudioError, load_audio

AUDIO_SUFFIXES = (".wav", ".mp3", ".flac", ".ogg", ".oga", ".aif", ".aiff")

__all__ = ["main", "plot_curves", "predict_file", "predict_waveform", "write_prediction"]


def _config(model):
    return getattr(model, "config", None) or model.get_base_model().config


def predict_waveform(model, extractor, waveform: np.ndarray, sampling_rate: int, *, name: str = "audio",
                     window_steps: int | None = None, hop_steps: int | None = None):
    """Per-step predictions of one waveform: a DataFrame with `time_seconds`, `arousal`, `valence`."""
    import pandas as pd

    config = _config(model)
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


def plot_curves(frame, path: str | os.PathLike, title: str = "") -> Path:
    """PNG with two panels: arousal/valence over time, and the trajectory on the valence-arousal plane."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_va) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [2, 1]})
    t = frame["time_seconds"].to_numpy()
    ax_t.plot(t, frame["arousal"], label="arousal", color="tab:red")
    ax_t.plot(t, frame["valence"], label="valence", color="tab:blue")
    ax_t.axhline(0, color="0.7", lw=0.8)
    ax_t.set_xlabel("time (s)")
    ax_t.set_ylabel("value")
    ax_t.set_title("arousal and valence over time")
    ax_t.legend(loc="upper right")
    v, a = frame["valence"].to_numpy(), frame["arousal"].to_numpy()
    points = ax_va.scatter(v, a, c=t, cmap="viridis", s=10, zorder=3)
    ax_va.plot(v, a, color="0.6", lw=0.6, zorder=2)
    lim = max(1.0, float(np.abs(np.concatenate([v, a])).max()) * 1.05) if len(v) else 1.0
    ax_va.set_xlim(-lim, lim)
    ax_va.set_ylim(-lim, lim)
    ax_va.axhline(0, color="0.7", lw=0.8)
    ax_va.axvline(0, color="0.7", lw=0.8)
    ax_va.set_xlabel("valence")
    ax_va.set_ylabel("arousal")
    ax_va.set_title("valence-arousal plane")
    ax_va.set_aspect("equal")
    fig.colorbar(points, ax=ax_va, label="time (s)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def write_prediction(frame, output_dir: str | os.PathLike, stem: str, *, source: str = "", model: str = "",
                     user: str | None = None, step_seconds: float = 0.5, plot: bool = True) -> dict[str, Path]:
    """Write `<stem>.csv`, `<stem>.json` (and `<stem>.png`) into `output_dir`."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / f"{stem}.csv", "json": out / f"{stem}.json"}
    frame.to_csv(paths["csv"], index=False, float_format="%.6f")
    payload = {
        "file": source, "model": model, "user": user, "step_seconds": step_seconds, "num_steps": len(frame),
        "time_seconds": [round(float(x), 6) for x in frame["time_seconds"]],
        "arousal": [float(x) for x in frame["arousal"]],
        "valence": [float(x) for x in frame["valence"]],
    }
    paths["json"].write_text(json.dumps(payload), encoding="utf-8")
    if plot:
        paths["png"] = plot_curves(frame, out / f"{stem}.png",
                                   title=f"{Path(source).name or stem}" + (f" (user {user})" if user else ""))
    return paths


def _expand(inputs: list[str]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        else:
            files.append(path)
    return files


def _stems(files: list[Path]) -> list[str]:
    """Output names: the file stem, made unique when two inputs share one."""
    seen: dict[str, int] = {}
    stems = []
    for f in files:
        n = seen.get(f.stem, 0)
        seen[f.stem] = n + 1
        stems.append(f.stem if n == 0 else f"{f.stem}_{n}")
    return stems


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dsaml predict",
                                     description="Arousal/valence at 2 Hz for audio files: CSV + JSON + PNG per file.")
    parser.add_argument("inputs", nargs="+", help="audio files or folders (searched recursively)")
    parser.add_argument("--model", required=True, help="model folder (save_pretrained) or Hub repo id")
    parser.add_argument("--adapter_dir", default=None, help="folder of per-user LoRA adapters (dsaml personalize)")
    parser.add_argument("--adapter", "--user", dest="user", default=None, help="the user whose adapter to apply")
    parser.add_argument("--output", default="predictions", help="output folder")
    parser.add_argument("--window_steps", type=int, default=None)
    parser.add_argument("--hop_steps", type=int, default=None)
    parser.add_argument("--no_plot", action="store_true", help="skip the PNG plots")
    parser.add_argument("--fail_fast", action="store_true", help="stop at the first unusable file")
    return parser


def main(argv: list[str] | None = None) -> int:
    from tqdm.auto import tqdm

    from dsaml.personalize import AdapterError, UnknownUserError, load_extractor, load_personalized

    args = build_parser().parse_args(argv)
    adapter_dir = args.adapter_dir
    if args.user is not None and adapter_dir is None:
        adapter_dir = "adapters"
    try:
        model = load_personalized(args.model, adapter_dir, args.user)
    except (AdapterError, UnknownUserError) as exc:
        print(f"dsaml predict: error: {exc}", file=sys.stderr)
        return 1
    config = _config(model)
    extractor = load_extractor(args.model, config)
    files = _expand(args.inputs)
    if not files:
        print("dsaml predict: error: no audio files found in " + ", ".join(args.inputs), file=sys.stderr)
        return 1
    failures = []
    for path, stem in tqdm(list(zip(files, _stems(files))), desc="predicting", unit="song"):
        try:
            frame = predict_file(model, extractor, path, args.window_steps, args.hop_steps)
        except AudioError as exc:
            if args.fail_fast:
                print(f"dsaml predict: error: {exc}", file=sys.stderr)
                return 1
            failures.append(str(exc))
            continue
        write_prediction(frame, args.output, stem, source=str(path), model=str(args.model), user=args.user,
                         step_seconds=config.step_seconds, plot=not args.no_plot)
    done = len(files) - len(failures)
    print(f"wrote {done} prediction(s) to {args.output}")
    for message in failures:
        print(f"dsaml predict: skipped: {message}", file=sys.stderr)
    return 1 if failures else 0
