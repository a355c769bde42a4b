"""Checkpoints that survive interruption: written to a temporary folder, then renamed into place.

A training checkpoint `output_dir/checkpoints/step_000120/` holds Accelerate's state (`save_state`: optimizer,
RNG states of every process), the model's weights and buffers as safetensors, and `trainer_state.json`
(step, best score, history). A folder only gets its final name once complete, so the latest `step_*` folder
is always loadable. Exported models (`best/`, `last/`) go through the same rename.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from dsaml.adaptation.config import personalization_config
from dsaml.utils.files import make_readable

_STEP = re.compile(r"^step_(\d+)$")
STATE_FILE = "trainer_state.json"
WEIGHTS_FILE = "model.safetensors"


def checkpoint_dirs(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m[1]), p) for p in root.iterdir() if (m := _STEP.match(p.name)) and (p / STATE_FILE).is_file()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    dirs = checkpoint_dirs(output_dir)
    return dirs[-1] if dirs else None


def save_checkpoint(accelerator, model: torch.nn.Module, state: dict, output_dir: str | os.PathLike,
                    keep: int) -> Path:
    """Save a checkpoint of step `state["step"]` (call on EVERY process: each saves its RNG state)."""
    root = Path(output_dir) / "checkpoints"
    final = root / f"step_{state['step']:06d}"
    staging = root / f".step_{state['step']:06d}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    if accelerator.is_main_process:
        tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(tensors, str(staging / WEIGHTS_FILE), metadata={"format": "pt"})
        (staging / STATE_FILE).write_text(json.dumps(state, indent=1), encoding="utf-8")
        make_readable(staging)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
        for old in checkpoint_dirs(output_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, model: torch.nn.Module, path: str | os.PathLike) -> dict:
    """Restore model weights/buffers, optimizer and RNG states; returns the trainer state."""
    path = Path(path)
    if not (path / STATE_FILE).is_file():
        raise FileNotFoundError(f"{path} is not a complete dsaml checkpoint (no {STATE_FILE})")
    state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    weights = load_file(str(path / WEIGHTS_FILE), device=str(next(model.parameters()).device))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    # what the model class tolerates missing from its saved weights (e.g. a buffer added since), it does here too
    tolerated = getattr(accelerator.unwrap_model(model), "_keys_to_ignore_on_load_missing", None) or []
    missing = [k for k in missing if not any(re.search(pattern, k) for pattern in tolerated)]
    if missing or unexpected:
        raise ValueError(f"{path}: checkpoint does not match the model (missing {missing[:5]}, unexpected {unexpected[:5]})")
    accelerator.load_state(str(path))
    return state


def export_model(model, extractor, folder: str | os.PathLike) -> Path:
    """`save_pretrained` (safetensors + config + remote code), the personalization config and the feature
    extractor, renamed into place."""
    folder = Path(folder)
    staging = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    personalization_config(model).save_pretrained(staging)
    extractor.save_pretrained(staging)
    make_readable(staging)
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(staging, folder)
    return folder

