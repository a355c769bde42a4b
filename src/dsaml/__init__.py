"""dsaml: personalized dynamic music emotion recognition (DSAML) for the Hugging Face ecosystem.

The model classes are imported on first use (PEP 562 module `__getattr__`): `import dsaml` and `dsaml --help`
load neither torch nor transformers; `dsaml.DSAMLConfig` (or `from dsaml import DSAMLConfig`) loads them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> the module defining it
_LAZY = {
    "DSAMLConfig": "dsaml.modeling",
    "DSAMLFeatureExtractor": "dsaml.modeling",
    "DSAMLForDynamicEmotionRecognition": "dsaml.modeling",
    "DSAMLModel": "dsaml.modeling",
    "DSAMLPreTrainedModel": "dsaml.modeling",
}

__all__ = [*_LAZY, "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from dsaml.modeling import (
        DSAMLConfig,
        DSAMLFeatureExtractor,
        DSAMLForDynamicEmotionRecognition,
        DSAMLModel,
        DSAMLPreTrainedModel,
    )


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'dsaml' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
