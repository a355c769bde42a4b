"""`dsaml predict`: arousal/valence curves at 2 Hz for audio files and folders, CSV + JSON + PNG per file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dsaml.audio.reader import AUDIO_EXTENSIONS
from dsaml.commands.boundary import reports_errors


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
    """Output names, one per input and all different: the file stem, or `<stem>_<n>` with the smallest n that
    no other input's stem or earlier output name takes (`a.mp3`, `a.wav`, `a_1.wav` -> a, a_2, a_1)."""
    taken = {f.stem for f in files}
    used: set[str] = set()
    stems = []
    for f in files:
        name, n = f.stem, 0
        while name in used or (n and name in taken):
            n += 1
            name = f"{f.stem}_{n}"
        used.add(name)
        stems.append(name)
    return stems


def _header_seconds(path: Path, audio_duration, error_type) -> float:
    try:
        return audio_duration(path)
    except error_type:
        return 0.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dsaml predict",
                                     description="Arousal/valence at 2 Hz for audio files: CSV + JSON + PNG per file.")
    parser.add_argument("inputs", nargs="+", help="audio files or folders (searched recursively)")
    parser.add_argument("--model", required=True, help="model folder (save_pretrained) or Hub repo id")
    parser.add_argument("--adapter_dir", default=None, help="folder of per-user LoRA adapters (dsaml personalize)")
    parser.add_argument("--user", default=None, help="the user whose adapter to apply (as in dsaml personalize)")
    parser.add_argument("--output", default="predictions", help="output folder")
    parser.add_argument("--allow_unverified_adapter", action="store_true",
                        help="apply an adapter whose base model cannot be verified (no dsaml_adapter.json)")
    parser.add_argument("--window_steps", type=int, default=None, help="steps per window (default: the model's)")
    parser.add_argument("--hop_steps", type=int, default=None, help="steps between windows (default: the model's)")
    parser.add_argument("--batch_size", type=int, default=None,
                        help="sliding windows per forward pass (default: measured on the first windows, "
                             "the size that pays on this machine)")
    parser.add_argument("--no_plot", action="store_true", help="skip the PNG plots")
    parser.add_argument("--fail_fast", action="store_true", help="stop at the first unusable file")
    return parser


@reports_errors("dsaml predict")
def main(argv: list[str] | None = None) -> int:
    from tqdm.auto import tqdm

    from dsaml.audio.reader import audio_duration
    from dsaml.errors import AudioError
    from dsaml.inference.files import predict_files, write_prediction
    from dsaml.inference.loading import load_extractor, model_config
    from dsaml.personalization.adapters import load_personalized
    from dsaml.utils.files import check_output_folder
    from dsaml.utils.storage import check_user

    args = build_parser().parse_args(argv)
    if args.user is not None:
        check_user(args.user)
    for flag in ("window_steps", "hop_steps", "batch_size"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise ValueError(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    check_output_folder(args.output)  # before any prediction is computed
    files = _expand(args.inputs)
    if not files:
        raise FileNotFoundError("no audio files found in " + ", ".join(args.inputs))
    adapter_dir = args.adapter_dir
    if args.user is not None and adapter_dir is None:
        adapter_dir = "adapters"
    model = load_personalized(args.model, adapter_dir, args.user, allow_unverified=args.allow_unverified_adapter)
    config = model_config(model)
    extractor = load_extractor(args.model, config)
    failures = []
    stems = _stems(files)
    # the bar counts seconds of audio (header lengths; an unreadable file counts 0 and is reported below)
    total = sum(_header_seconds(path, audio_duration, AudioError) for path in files)
    with tqdm(total=round(total, 1), desc="predicting", unit="s audio", unit_scale=False,
              bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}]") as bar:
        results = predict_files(model, extractor, files, window_steps=args.window_steps, hop_steps=args.hop_steps,
                                batch_size=args.batch_size, progress=bar)
        for index, result in results:
            if isinstance(result, AudioError):
                if args.fail_fast:
                    results.close()
                    raise result
                failures.append(str(result))
                continue
            write_prediction(result, args.output, stems[index], source=str(files[index]), model=str(args.model),
                             user=args.user, step_seconds=config.step_seconds, plot=not args.no_plot)
    print(f"wrote {len(files) - len(failures)} of {len(files)} prediction(s) to {args.output}")
    for message in failures:
        print(f"dsaml predict: skipped: {message}", file=sys.stderr)
    return 1 if failures else 0
