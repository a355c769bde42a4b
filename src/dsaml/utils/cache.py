"""Where dsaml keeps what it can compute again: `$DSAML_CACHE`, else `~/.cache/dsaml`."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root"]


def cache_root() -> Path:
    """Where dsaml caches generated data: `$DSAML_CACHE`, else `~/.cache/dsaml`."""
    return Path(os.environ.get("DSAML_CACHE") or Path.home() / ".cache" / "dsaml").expanduser()
