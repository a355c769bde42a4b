"""`dsaml personalize`: adapt a model to one listener from one annotated song and save it (LoRA or full)."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dsaml.adapters import DEFAULT_FULL_MODULES
from dsaml.errors import reports_errors
from dsaml.storage import USER_NAME_RULE, check_target, check_user

if TYPE_CHECKING:  # pragma: no cover
    from dsaml.personalize import Personalization


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


def check_request(user: str, output: str | os.PathLike | None = None, *, mode: str = "lora", overwrite: bool = False,
                  rank: int = 4, steps: int | None = None, lr: float | None = None,
                  value_range: tuple[float, float] = (-1.0, 1.0)) -> Path:
    """Refuse, before any work, what would make the personalization meaningless or could not be stored: a user
    name outside the rule, bad numbers, an output that exists (without `overwrite`) or cannot be written.
    Returns the folder of per-user results (`output`, or the mode's default)."""
    check_user(user)
    if rank < 1:
        raise ValueError(f"--rank must be >= 1, got {rank}")
    if steps is not None and steps < 0:
        raise ValueError(f"--steps must be >= 0, got {steps}")
    if lr is not None and not (math.isfinite(lr) and lr >= 0):
        raise ValueError(f"--lr must be a finite number >= 0, got {lr}")
    low, high = value_range
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"--value_range must be two finite numbers LOW < HIGH, got {low} {high}")
    root = Path(output or ("personalized" if mode == "full" else "adapters"))
    check_target(root / user, overwrite=overwrite, what=_what(mode, user))
    return root


def _what(mode: str, user: str) -> str:
    return f"{'personalized model' if mode == 'full' else 'adapter'} of user {user!r}"


def personalize_and_save(model, extractor, audio: str | os.PathLike, annotations: str | os.PathLike, *, user: str,
                         model_name: str, output: str | os.PathLike | None = None, mode: str = "lora",
                         overwrite: bool = False, rank: int = 4,
                         full_modules: Sequence[str] = DEFAULT_FULL_MODULES, steps: int | None = None,
                         lr: float | None = None, seed: int = 0,
                         value_range: tuple[float, float] = (-1.0, 1.0)) -> tuple[Personalization, Path]:
    """What `dsaml personalize` does once the model is loaded, for every caller (the CLI, `dsaml demo`): check the
    request, adapt `model` to the annotated song, save the result under the user's name in `output`.
    Returns the personalization and the folder it was saved to."""
    from dsaml.adapters import save_full, save_lora
    from dsaml.personalize import personalize_audio

    root = check_request(user, output, mode=mode, overwrite=overwrite, rank=rank, steps=steps, lr=lr,
                         value_range=value_range)
    result = personalize_audio(model, extractor, audio, annotations, user=user, steps=steps, lr=lr, seed=seed,
                               value_range=tuple(value_range))
    if mode == "full":
        out = save_full(result, root / user, extractor, base=model, overwrite=overwrite)
    else:
        out = save_lora(model, result, root, rank=rank, full_modules=full_modules, base_name_or_path=model_name,
                        overwrite=overwrite)
    return result, Path(out)


@reports_errors("dsaml personalize")
def main(argv: list[str] | None = None) -> int:
    from dsaml.adapters import load_extractor, load_model

    from dsaml.annotations import read_annotations

    args = build_parser().parse_args(argv)
    options = dict(mode=args.mode, overwrite=args.overwrite, rank=args.rank, steps=args.steps, lr=args.lr,
                   value_range=tuple(args.value_range))
    # everything that can be refused is refused before the model is loaded and the adaptation runs
    check_request(args.user, args.output, **options)
    read_annotations(args.annotations)  # the file's size, format and columns; its grid again with the model's step
    model = load_model(args.model)
    extractor = load_extractor(args.model, model.config)
    result, out = personalize_and_save(model, extractor, args.audio, args.annotations, user=args.user,
                                       model_name=args.model, output=args.output, full_modules=args.full_modules,
                                       seed=args.seed, **options)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1024
    print(f"personalized {args.user!r} on {result.info['support_steps']} steps ({result.steps} inner steps, "
          f"lr {result.lr:g}): support loss {result.support_loss_before:.4f} -> {result.support_loss_after:.4f}")
    if any(result.info["delay_steps"]):
        lag = [d * model.config.step_seconds for d in result.info["delay_steps"]]
        print(f"reaction lag (fitted on the song): arousal {lag[0]:g} s, valence {lag[1]:g} s")
    if "note" in result.info:
        print(f"note: {result.info['note']}")
    print(f"saved {args.mode} to {out} ({size:.1f} KB)")
    return 0
