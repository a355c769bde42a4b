"""`dsaml train` / `accelerate launch -m dsaml.cli train`: the command line of a training run (`dsaml.training.loop.train`)."""

from __future__ import annotations

import argparse
import logging
import sys

import yaml

from dsaml.commands.boundary import reports_errors
from dsaml.training.config_files import MERGED, load_arguments


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dsaml train", description="DSAML meta-training over annotator tasks (Accelerate).")
    parser.add_argument("--config", default="synthetic_small",
                        help="a shipped config name (synthetic_small, synthetic_long, synthetic_tiny, deam_pdmer, deam_dmer, vgmidi) or a YAML "
                             "file (default: synthetic_small)")
    parser.add_argument("--dataset", help="dataset folder, Hub dataset id or synthetic[:size[:seed]]")
    parser.add_argument("--output_dir", "--output-dir")
    parser.add_argument("--max_steps", "--max-steps", type=int)
    parser.add_argument("--algorithm", choices=("fomaml", "maml", "reptile", "plain"))
    parser.add_argument("--seed", type=int)
    parser.add_argument("--init_from", "--init-from", help="start from a saved model (folder or Hub id)")
    parser.add_argument("--resume_from_checkpoint", "--resume-from-checkpoint",
                        help="'auto' (default: latest in output_dir), a checkpoint folder, or 'none'")
    parser.add_argument("--push_to_hub", "--push-to-hub", action="store_true")
    parser.add_argument("--hub_model_id", "--hub-model-id")
    parser.add_argument("--hub_private", "--hub-private", action="store_true")
    parser.add_argument("--no_progress", "--no-progress", action="store_true")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any training argument (YAML value), e.g. --set tasks_per_step=8 "
                             "--set personalization.steps=4")
    return parser


def parse_overrides(ns: argparse.Namespace) -> dict:
    overrides: dict = {}
    for name in ("dataset", "output_dir", "max_steps", "algorithm", "seed", "init_from", "hub_model_id"):
        if getattr(ns, name) is not None:
            overrides[name] = getattr(ns, name)
    if ns.resume_from_checkpoint is not None:
        overrides["resume_from_checkpoint"] = None if ns.resume_from_checkpoint == "none" else ns.resume_from_checkpoint
    if ns.push_to_hub:
        overrides["push_to_hub"] = True
    if ns.hub_private:
        overrides["hub_private"] = True
    if ns.no_progress:
        overrides["progress"] = False
    for item in ns.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        value = yaml.safe_load(value)
        section, dot, name = key.partition(".")
        if dot and section in MERGED:
            overrides.setdefault(section, {})[name] = value
        else:
            overrides[key] = value
    return overrides


@reports_errors("dsaml train")
def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("accelerate", "matplotlib", "datasets", "filelock"):  # keep the console for progress and scores
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = load_arguments(ns.config, parse_overrides(ns))
    from dsaml.training.stages import run_stages

    try:
        run_stages(args)
    except KeyboardInterrupt:  # the loop saved a checkpoint at a step boundary (or was stopped by a 2nd Ctrl-C)
        print("dsaml train: interrupted", file=sys.stderr)
        return 130
    return 0
