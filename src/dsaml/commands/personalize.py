"""`dsaml personalize`: adapt a model to one listener from one annotated song and save it (LoRA or full)."""

from __future__ import annotations

import argparse

from dsaml.commands.boundary import reports_errors
from dsaml.data.annotation_files import read_annotations
from dsaml.personalization.request import DEFAULT_FULL_MODULES, check_request
from dsaml.utils.storage import USER_NAME_RULE


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
    parser.add_argument("--steps", type=int, default=None, help="inner steps (default: the model's personalization config); another inner loop keeps its whole change")
    parser.add_argument("--lr", type=float, default=None, help="inner learning rate (default: the model's personalization config)")
    parser.add_argument("--seed", type=int, default=0, help="torch seed of the inner loop (dropout)")
    parser.add_argument("--value_range", type=float, nargs=2, default=(-1.0, 1.0), metavar=("LOW", "HIGH"),
                        help="allowed annotation range")
    return parser


@reports_errors("dsaml personalize")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = dict(mode=args.mode, overwrite=args.overwrite, rank=args.rank, steps=args.steps, lr=args.lr,
                   value_range=tuple(args.value_range))
    # everything that can be refused is refused before torch and the model load and the adaptation runs
    check_request(args.user, args.output, **options)
    read_annotations(args.annotations)  # the file's size, format and columns; its grid again with the model's step
    from dsaml.inference.loading import load_extractor, load_model
    from dsaml.personalization.service import personalize_and_save

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
