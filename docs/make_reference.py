"""Write docs/reference.md: every field of the model config, the personalization config and the training
arguments, with its help, default and bounds, read from the fields' metadata (the one place they are written).

    python docs/make_reference.py            # rewrite docs/reference.md
    python docs/make_reference.py --check    # exit 1 if docs/reference.md differs (tests/test_docs.py runs this)
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from dsaml.adaptation.config import PersonalizationConfig
from dsaml.modeling import DSAMLConfig
from dsaml.modeling.configuration_dsaml import bounds_text
from dsaml.training.arguments import TrainingArguments

OUTPUT = Path(__file__).resolve().parent / "reference.md"
SECTIONS = [
    (DSAMLConfig, "The model config (`config.json`, `DSAMLConfig`)",
     "What the network is: the front end, the dual-scale feature extractor, the transformer, the predictor and the "
     "loss. In a training config, under `model:`."),
    (PersonalizationConfig, "The personalization config (`personalization_config.json`, `PersonalizationConfig`)",
     "How the model adapts to a listener: the inner loop meta-training learns through, and how far personalization "
     "moves. In a training config, under `personalization:`."),
    (TrainingArguments, "Training arguments (`TrainingArguments`)",
     "A training config's top level (`dsaml train --config <name or YAML file>`, `--set key=value`)."),
]


def default_text(f: dataclasses.Field) -> str:
    value = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    return "`null`" if value is None else f"`{value!r}`".replace("'", "") if isinstance(value, (list, tuple, dict)) \
        else f"`{value}`"


def render() -> str:
    lines = ["# Configuration reference", "",
             "Generated from the fields' metadata by `python docs/make_reference.py`; bounds are checked before "
             "anything is built (a model folder from the Hub is untrusted input). How each setting was chosen: "
             "[method](method.md).", ""]
    for cls, title, intro in SECTIONS:
        lines += [f"## {title}", "", intro, "", "| field | default | bounds | what it does |", "|---|---|---|---|"]
        for f in dataclasses.fields(cls):
            if "help" not in f.metadata:
                continue
            text = f.metadata["help"].replace("|", "\\|")
            lines.append(f"| `{f.name}` | {default_text(f)} | {bounds_text(f.metadata)} | {text} |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="compare instead of writing")
    args = p.parse_args()
    text = render()
    if args.check:
        if not OUTPUT.is_file() or OUTPUT.read_text() != text:
            print(f"{OUTPUT} is out of date: run python docs/make_reference.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
