"""Training configs as files: the shipped ones by name (`dsaml/training/configs/*.yaml`), or any YAML path,
with command-line overrides on top."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from dsaml.errors import ConfigError
from dsaml.training.arguments import TrainingArguments

__all__ = ["config_path", "load_arguments", "shipped_configs"]

MERGED = ("model", "personalization")  # mappings an override merges key by key instead of replacing


def shipped_configs() -> list[str]:
    folder = resources.files("dsaml.training") / "configs"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def config_path(name_or_path: str | Path) -> Path:
    """A shipped config by name (`synthetic_small`, `deam_pdmer`, ...) or a YAML file path."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    shipped = resources.files("dsaml.training") / "configs" / f"{name_or_path}.yaml"
    if shipped.is_file():
        return Path(str(shipped))
    raise FileNotFoundError(f"training config {name_or_path!r} is neither a YAML file nor a shipped config "
                            f"{shipped_configs()}")


def load_arguments(name_or_path: str | Path | None, overrides: dict | None = None) -> TrainingArguments:
    """Arguments from a YAML config (shipped name or path), with `overrides` applied on top (`model` and
    `personalization` overrides are merged key by key)."""
    values: dict = {}
    if name_or_path is not None:
        path = config_path(name_or_path)
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a training config must be a YAML mapping, got {type(loaded).__name__}")
        values.update(loaded)
    for key, value in (overrides or {}).items():
        values[key] = {**values.get(key, {}), **value} if key in MERGED else value
    return TrainingArguments.from_dict(values)
