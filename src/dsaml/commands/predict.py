"""`dsaml predict`: arousal/valence curves at 2 Hz for audio files and folders, CSV + JSON + PNG per file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dsaml.audio import AUDIO_EXTENSIONS

def _expand(inputs: list[str]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
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
    parser.add_argument("--user", default=None, help="the user whose adapter to apply (as in dsaml personalize)")
    parser.add_argument("--output", default="predictions", help="output folder")
    parser.add_argument("--window_steps", type=int, default=None)
    parser.add_argument("--hop_steps", type=int, default=None)
    parser.add_argument("--no_plot", action="store_true", help="skip the PNG plots")
    parser.add_argument("--fail_fast", action="store_true", help="stop at the first unusable file")
    return parser


def main(argv: list[str] | None = None) -> int:
    from tqdm.auto import tqdm

    from dsaml.adapters import AdapterError, UnknownUserError, load_extractor, load_personalized
    from dsaml.audio import AudioError
    from dsaml.predict import model_config, predict_file, write_prediction

    args = build_parser().parse_args(argv)
    adapter_dir = args.adapter_dir
    if args.user is not None and adapter_dir is None:
        adapter_dir = "adapters"
    try:
        model = load_personalized(args.model, adapter_dir, args.user)
    except (AdapterError, UnknownUserError) as exc:
        print(f"dsaml predict: error: {exc}", file=sys.stderr)
        return 1
    config = model_config(model)
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
