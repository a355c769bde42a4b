"""`dsaml personalize`: adapt a model to one listener from one annotated song and save it (LoRA or full)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from dsaml.adapters import DEFAULT_FULL_MODULES
from dsaml.errors import reports_errors
from dsaml.storage import USER_NAME_RULE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dsaml personalize",
        description="Adapt a DSAML model to one listener from one annotated song (the meta-learned inner loop).",
    )
    parser.add_argument("--model", required=True, help="model folder (save_pretrained) or Hub repo id")
    parser.add_argument("--audio", required=True, help="the support song (wav/mp3/flac/ogg)")
    parser.add_argument("--annotations", required=True,
                        help="the listener's curve: CSV with time (s), arousal, valence; or a `dsaml predict` JSON")
    parser.add_argument("--user", required=True, help=f"listener id, names the adapter ({USER_NAME_RULE})")
    parser.add_argument("--output", default=None,
                        help="the folder of per-user results; the user's goes to <output>/<user>/ "
                             "(default: adapters/ in lora mode, personalized/ in full mode)")
    parser.add_argument("--overwrite", action="store_true", help="replace the user's existing adapter or model")
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


def _check_numbers(args: argparse.Namespace) -> None:
    """Options that would make the adaptation meaningless, refused before any work."""
    if args.rank < 1:
        raise ValueError(f"--rank must be >= 1, got {args.rank}")
    if args.steps is not None and args.steps < 0:
        raise ValueError(f"--steps must be >= 0, got {args.steps}")
    if args.lr is not None and not (math.isfinite(args.lr) and args.lr >= 0):
        raise ValueError(f"--lr must be a finite number >= 0, got {args.lr}")
    low, high = args.value_range
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"--value_range must be two finite numbers LOW < HIGH, got {low} {high}")


@reports_errors("dsaml personalize")
def main(argv: list[str] | None = None) -> int:
    from dsaml.adapters import load_extractor, load_model, save_full, save_lora
    from dsaml.personalize import personalize_audio
    from dsaml.storage import check_target, check_user

    args = build_parser().parse_args(argv)
    # everything that can be refused is refused before the model is loaded and the adaptation runs
    check_user(args.user)
    _check_numbers(args)
    root = Path(args.output or ("personalized" if args.mode == "full" else "adapters"))
    target = check_target(root / args.user, overwrite=args.overwrite,
                          what=f"{'personalized model' if args.mode == 'full' else 'adapter'} of user {args.user!r}")
    model = load_model(args.model)
    extractor = load_extractor(args.model, model.config)
    result = personalize_audio(model, extractor, args.audio, args.annotations, user=args.user,
                               steps=args.steps, lr=args.lr, seed=args.seed, value_range=tuple(args.value_range))
    if args.mode == "full":
        out = save_full(result, target, extractor, base=model, overwrite=args.overwrite)
    else:
        out = save_lora(model, result, root, rank=args.rank, full_modules=args.full_modules,
                        base_name_or_path=args.model, overwrite=args.overwrite)
    size = sum(p.stat().st_size for p in Path(out).rglob("*") if p.is_file()) / 1024
    print(f"personalized {args.user!r} on {result.info['support_steps']} steps ({result.steps} inner steps, "
          f"lr {result.lr:g}): support loss {result.support_loss_before:.4f} -> {result.support_loss_after:.4f}")
    print(f"saved {args.mode} to {out} ({size:.1f} KB)")
    return 0
