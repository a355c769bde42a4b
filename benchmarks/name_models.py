"""Replace the machine paths in result files with names anyone can reproduce (run once; idempotent).

Results written before this script recorded the model and dataset folders of the machine that ran them. A model
is named here by the config that trained it and the commit that wrote the result (the code it was trained and
measured with): `--model outputs/<config>/best` in the command, the config's own output folder, and
`"model": "<config> model, dsaml <commit>"` in the figures; the VGMIDI folder by what `dsaml prepare vgmidi`
writes (`data/vgmidi`). No result is rerun: only these strings change.

    python benchmarks/name_models.py            # rewrites benchmarks/results/*.json in place
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
# the experiment folders of those runs -> the shipped config that trained the model in them
MODEL_CONFIGS = {"main_lag": "synthetic_small", "main_run": "synthetic_small", "staged": "synthetic_small",
                 "final": "synthetic_small", "long_lag": "synthetic_long", "long_avg": "synthetic_long",
                 "longB": "synthetic_long", "vg_lag": "vgmidi", "vg_runA/model": "vgmidi", "vg2_run": "vgmidi"}
DATASETS = {"vgmidi_data": "data/vgmidi"}
MACHINE_PATH = re.compile(r"/(?:work|tmp|home|root)/[^\s\"']*")


def commit_of(path: Path) -> str:
    """The commit that last wrote `path` (its measurements' code)."""
    out = subprocess.run(["git", "log", "-1", "--format=%h", "--", str(path)], cwd=HERE, capture_output=True,
                         text=True, check=True)
    return out.stdout.strip() or "uncommitted"


def rename(text: str, commit: str, in_command: bool) -> str:
    def one(match: re.Match) -> str:
        path = match.group(0)
        for folder, config in MODEL_CONFIGS.items():
            if f"/{folder}/best" in path:
                return f"outputs/{config}/best" if in_command else f"{config} model, dsaml {commit}"
        for folder, name in DATASETS.items():
            if path.rstrip("/").endswith(folder):
                return name
        return f"results/{Path(path).name}" if path.endswith(".json") else Path(path).name
    return MACHINE_PATH.sub(one, text)


def walk(value, commit: str, in_command: bool = False):
    if isinstance(value, dict):
        return {k: walk(v, commit, in_command or k == "command") for k, v in value.items()}
    if isinstance(value, list):
        return [walk(v, commit, in_command) for v in value]
    if isinstance(value, str):
        return rename(value, commit, in_command)
    return value


def main() -> None:
    for path in sorted((HERE / "results").glob("*.json")):
        text = path.read_text(encoding="utf-8")
        if not MACHINE_PATH.search(text):
            continue
        doc = walk(json.loads(text), commit_of(path))
        path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        print(f"named the models of {path.name}")


if __name__ == "__main__":
    main()
