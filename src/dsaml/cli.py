"""The `dsaml` command: one sub-command per workflow step, each implemented in its own module.

Sub-command modules are imported lazily so `dsaml --help` stays fast and one step's dependencies
never slow down another's start-up.
"""

from __future__ import annotations

import importlib
import sys

# name -> (module exposing `main(argv: list[str]) -> int | None`, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("dsaml.commands.prepare", "build a Hub-ready dataset folder (deam, pmemo, synthetic, vgmidi)"),
    "train": ("dsaml.commands.train", "meta-train (or plainly train) DSAML with Accelerate"),
    "personalize": ("dsaml.commands.personalize", "adapt a model to one listener from one annotated song"),
    "predict": ("dsaml.commands.predict", "predict arousal/valence curves for audio files (CSV/JSON + PNG)"),
    "evaluate": ("dsaml.commands.evaluate", "score predictions or a model against annotations"),
    "demo": ("dsaml.commands.demo", "a local web page: see a song's curves, annotate it, get your own model"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: dsaml <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `dsaml <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(_usage())
        return 0
    if argv[0] in {"-V", "--version"}:
        from dsaml import __version__

        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"dsaml: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    from transformers.utils import logging as transformers_logging

    # loading or saving a model takes a blink here; its per-tensor progress bars would bury the command's own
    transformers_logging.disable_progress_bar()
    module = importlib.import_module(COMMANDS[name][0])
    result = module.main(rest)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
