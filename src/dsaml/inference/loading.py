"""Loading a model for prediction: a local folder or a Hub repo id, its feature extractor, its config."""

from __future__ import annotations

import os
import re
from pathlib import Path

from dsaml.adaptation.config import PersonalizationConfig
from dsaml.modeling import DSAMLConfig, DSAMLFeatureExtractor, DSAMLForDynamicEmotionRecognition

__all__ = ["load_extractor", "load_model", "model_config", "model_location"]

# what huggingface_hub accepts as a repo id: `name` or `owner/name`, letters, digits, '-', '_', '.'
REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?")


def model_location(name: str | os.PathLike) -> str:
    """`name` as `from_pretrained` should get it: an existing model folder, or something that can only be a Hub
    repo id. A path that does not exist (`./model`, `runs/x/best`, `/abs/path`) fails here with a one-line
    `FileNotFoundError` instead of being looked up on the Hub."""
    text = str(name)
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{text}: not a model folder (no config.json); give a `save_pretrained` folder")
        return str(path)
    if path.exists():
        raise NotADirectoryError(f"{text}: is a file; give a model folder (save_pretrained) or a Hub repo id")
    if text.startswith((".", "/", "~")) or "\\" in text or not REPO_ID.fullmatch(text) or ".." in text:
        raise FileNotFoundError(f"{text}: model folder not found")
    return text


def load_model(name: str | os.PathLike) -> DSAMLForDynamicEmotionRecognition:
    """`from_pretrained` of a model folder or Hub repo id (`model_location`), in eval mode, with its
    `PersonalizationConfig` attached (`model.personalization_config`); a folder whose weights cannot be read fails
    with a one-line error naming it."""
    from safetensors import SafetensorError

    location = model_location(name)
    try:
        model = DSAMLForDynamicEmotionRecognition.from_pretrained(location).eval()
    except SafetensorError as exc:
        raise ValueError(f"{location}: the model weights (model.safetensors) cannot be read ({exc}); "
                           "the file may be truncated: save or download the model again") from None
    model.personalization_config = PersonalizationConfig.from_pretrained(location)
    model.personalization_config.check_model(model.config)
    return model


def load_extractor(model_dir: str | os.PathLike, config: DSAMLConfig) -> DSAMLFeatureExtractor:
    """The feature extractor saved with the model (folder or Hub repo), or the one its config implies."""
    if model_dir is not None:
        try:
            return DSAMLFeatureExtractor.from_pretrained(str(model_dir))
        except (OSError, ValueError):
            pass
    return DSAMLFeatureExtractor.from_model_config(config)


def model_config(model):
    """The DSAML config of a model or of a PEFT model wrapping one."""
    return getattr(model, "config", None) or model.get_base_model().config
