"""A personalization request, checked before any work: the user name, the numbers, the folder it will be saved in.

Light on purpose (the standard library and `dsaml.utils.storage` only): the command line refuses a bad request
before torch and the model are loaded.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from dsaml.utils.storage import check_target, check_user

__all__ = ["DEFAULT_FULL_MODULES", "check_request"]

# Non-Linear modules a LoRA adapter stores whole by default: the local CNN (its convolutions and normalizations,
# which a full-weight inner loop adapts):
# ~1.3k parameters (+7 KB) that lift the share of the full-mode gain a rank-4 adapter keeps on synthetic:small.
DEFAULT_FULL_MODULES = ("dsaml.features.local_cnn.*",)


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
