"""`dsaml personalize`: adapt a model to one listener from one annotated song and save it (LoRA or full)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dsaml.adapters import DEFAULT_FULL_MODULES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dsaml personalize",
        description="Adapt a DSAML model to one listener from one annotated song (the meta-learned inner loop).",
    )
    parser.add_argument("--model", required=True, help="model folder (save_pretrained) or Hub repo id")
    parser.add_argument("--audio", required=True, help="the support song (wav/mp3/flac/ogg)")
    parser.add_argument("--annotations", required=True,
                        help="the listener's curve: CSV with time (s), arousal, valence; or a `dsaml predict` JSON")
    parser.add_argument("--user", required=True, help="listener id (names the adapter)")
    parser.add_argument("--output", default=None,
                        help="full: the personalized model folder (default: personalized/<user>); lora: the folder "
                             "of per-user adapters (default: adapters/), the adapter goes to <output>/<user>/")
    parser.add_argument("--mode", choices=("lora", "full"), default="lora")
    parser.add_argument("--rank", type=int, default=4, help="LoRA rank (lora mode)")
    parser.add_argument("--full_modules", nargs="*", default=list(DEFAULT_FULL_MODULES), metavar="PATTERN",
                        help="lora mode: non-Linear modules to store whole in the adapter (PEFT modules_to_save), "
                             "e.g. 'predictor.lstm', or '*' for an exact adapter; give the flag alone for Linear "
                             f"layers only (default: {' '.join(DEFAULT_FULL_MODULES)})")
    parser.add_argument("--steps", type=int, default=None, help="inner steps (default: the model's adaptation_steps)")
    parser.add_argument("--lr", type=float, default=None, help="inner learning rate (default: adaptation_lr)")
    parser.add_argument("--seed", type=int, default=0, help="torch seed of the inner loop (dropout)")
    parser.add_argument("--value_range", type=float, nargs=2, default=(-1.0, 1.0), metavar=("LOW", "HIGH"),
                        help="allowed annotation range")
    return parser


def main(argv: list[str] | None = None) -> int:
    from dsaml.adapters import AdapterError, UnknownUserError, load_extractor, save_full, save_lora
    from dsaml.alignment import AnnotationError
    from dsaml.audio import AudioError
    from dsaml.modeling import DSAMLForDynamicEmotionRecognition
    from dsaml.personalize import personalize_audio

    args = build_parser().parse_args(argv)
    try:
        model = DSAMLForDynamicEmotionRecognition.from_pretrained(args.model)
        extractor = load_extractor(args.model, model.config)
        result = personalize_audio(model, extractor, args.audio, args.annotations, user=args.user,
                                   steps=args.steps, lr=args.lr, seed=args.seed, value_range=tuple(args.value_range))
        if args.mode == "full":
            out = save_full(result, args.output or Path("personalized") / args.user, extractor, base=model)
        else:
            out = save_lora(model, result, args.output or "adapters", rank=args.rank,
                            full_modules=args.full_modules, base_name_or_path=args.model)
    except (AudioError, AnnotationError, AdapterError, UnknownUserError) as exc:
        print(f"dsaml personalize: error: {exc}", file=sys.stderr)
        return 1
    size = sum(p.stat().st_size for p in Path(out).rglob("*") if p.is_file()) / 1024
    print(f"personalized {args.user!r} on {result.info['support_steps']} steps ({result.steps} inner steps, "
          f"lr {result.lr:g}): support loss {result.support_loss_before:.4f} -> {result.support_loss_after:.4f}")
    print(f"saved {args.mode} to {out} ({size:.1f} KB)")
    return 0
