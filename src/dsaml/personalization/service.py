"""Personalize a listener and store the result: the one path `dsaml personalize` and `dsaml demo` both call.

`personalize_and_save` checks the request (`dsaml.personalization.request`), adapts the model to the annotated
song and saves a LoRA adapter (or a full model folder) under the user's name.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from dsaml.personalization.adapters import save_full, save_lora
from dsaml.personalization.personalize import Personalization, personalize_audio
from dsaml.personalization.request import DEFAULT_FULL_MODULES, check_request

__all__ = ["personalize_and_save"]


def personalize_and_save(model, extractor, audio: str | os.PathLike, annotations: str | os.PathLike, *, user: str,
                         model_name: str, output: str | os.PathLike | None = None, mode: str = "lora",
                         overwrite: bool = False, rank: int = 4,
                         full_modules: Sequence[str] = DEFAULT_FULL_MODULES, steps: int | None = None,
                         lr: float | None = None, seed: int = 0,
                         value_range: tuple[float, float] = (-1.0, 1.0)) -> tuple[Personalization, Path]:
    """What `dsaml personalize` does once the model is loaded, for every caller (the CLI, `dsaml demo`): check the
    request, adapt `model` to the annotated song, save the result under the user's name in `output`.
    Returns the personalization and the folder it was saved to."""
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
