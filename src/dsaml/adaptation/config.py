"""How a model adapts to one listener: the personalization recipe, saved beside the weights.

transformers keeps what a model is (`config.json`) apart from how it is used (`generation_config.json`); dsaml
keeps the same split. `PersonalizationConfig` (`personalization_config.json`) holds the inner loop that
meta-training learned through and that personalization runs (SGD steps or the ridge refit, on which parameters),
and how far personalization moves on a new listener (the share of the change and the longest reaction lag, both
chosen on validation listeners after training). The rules between its fields, and between it and the
architecture, live here and nowhere else. A folder written before the split keeps the recipe in its
`config.json`; `from_pretrained` reads it from there.
"""

# No `from __future__ import annotations`: @strict reads the field types at runtime to validate values.
import dataclasses
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from huggingface_hub.dataclasses import strict
from huggingface_hub.errors import StrictDataclassError

from dsaml.errors import ConfigError, one_line
from dsaml.modeling.configuration_dsaml import DSAMLConfig, bound_problems, field_help, setting
from dsaml.utils.files import atomic_write_text

__all__ = ["LEGACY_FIELDS", "PERSONALIZATION_CONFIG_NAME", "READ_OUT", "READ_OUT_TENSORS", "PersonalizationConfig",
           "personalization_config"]

PERSONALIZATION_CONFIG_NAME = "personalization_config.json"
# the architecture config's fields before the split -> this config's
LEGACY_FIELDS = {"adaptation_method": "method", "adaptation_steps": "steps", "adaptation_lr": "learning_rate",
                 "adapted_parameters": "adapted_parameters", "adaptation_ridge": "ridge_strength",
                 "adaptation_level_share": "level_share", "adaptation_share": "share",
                 "adaptation_max_delay": "max_delay"}
# the predictor's linear read-out: a blend of its curves is the curve of blended weights (one share per dimension)
READ_OUT = ("predictor.dense", "predictor.out")
READ_OUT_TENSORS = tuple(f"{module}.{kind}" for module in READ_OUT for kind in ("weight", "bias"))
RIDGE_ADAPTED = ({"predictor.out"}, {"predictor.out.weight", "predictor.out.bias"})  # what the refit adapts


@strict
@dataclass
class PersonalizationConfig:
    """The inner loop and how far it moves. Each field's help, default and bounds: `PersonalizationConfig.help()`."""

    method: Literal["sgd", "ridge"] = setting(
        "sgd", "`sgd` (official: `steps` SGD steps on `adapted_parameters`) or `ridge` (the output layer refitted in "
        "closed form on the support song, shrunk toward the meta-learned layer; needs adapted_parameters "
        "[predictor.out]).")
    steps: int = setting(16, "Inner SGD steps (official 16).", minimum=0, maximum=1000)
    learning_rate: float | int = setting(5e-3, "Inner SGD learning rate (official 5e-3).", exclusive_minimum=0, maximum=100)
    adapted_parameters: list[str] = setting([], "Parameter-name prefixes or globs the inner loop adapts; empty: "
                                                "every trainable parameter.")
    ridge_strength: float | int = setting(1.0, "The ridge refit's pull toward the meta-learned output layer, relative to "
                                         "the support features' mean variance (0: least squares); the starting "
                                         "value when the model learns it (`learn_adaptation_ridge`).",
                                    minimum=0, maximum=1e6)
    level_share: float | int = setting(1.0, "The share of the support song's mean residual by which the ridge refit "
                                      "moves the curve's level (1: refitted freely, 0: the base model's); the "
                                      "starting value when the model learns it.", minimum=0, maximum=1)
    share: list[float | int] = setting([1.0, 1.0], "Personalization keeps this share of the inner loop's change, for "
                                             "arousal and valence: base + share * (adapted - base). Chosen on "
                                             "validation listeners after training (`calibrate_adaptation`); "
                                             "[1, 1]: the inner loop as meta-trained.", minimum=0, maximum=1.5)
    max_delay: int = setting(0, "With the ridge refit, the longest reaction lag (steps) fitted on the support song "
                                "with it (`predictor.delay`); chosen with the share. 0: none.", minimum=0,
                             maximum=3600)

    def __post_init__(self) -> None:
        self.adapted_parameters = [str(p) for p in self.adapted_parameters]
        self.share = [float(a) for a in self.share]
        self._check()

    @classmethod
    def help(cls) -> dict[str, str]:
        return field_help(cls)

    def _check(self) -> None:
        """A `ConfigError` naming the first field out of bounds or the first rule the fields break together (the
        field types are `@strict`'s)."""
        problems = bound_problems(self)
        rules = [
            (self.method in ("sgd", "ridge"), f"method must be 'sgd' or 'ridge', got {self.method!r}"),
            (len(self.share) == 2, f"share must be two numbers (arousal, valence), got {self.share}"),
            (self.method != "ridge" or set(self.adapted_parameters) in RIDGE_ADAPTED,
             f"the ridge refit adapts the output layer: set adapted_parameters [predictor.out] (got "
             f"{self.adapted_parameters or 'every parameter'})"),
            (not self.max_delay or self.method == "ridge",
             "max_delay chooses the reaction lag with the ridge refit: set method ridge"),
            (len(set(self.share)) == 1 or self.reads_out_only,
             f"share {self.share} differs per dimension, which needs an inner loop that adapts only the predictor's "
             f"linear read-out ({', '.join(READ_OUT)}); adapted_parameters is "
             f"{self.adapted_parameters or 'every parameter'}"),
        ]
        problems += [message for ok, message in rules if not ok]
        if problems:
            raise ConfigError(f"personalization config: {problems[0]}")

    def check_model(self, config: DSAMLConfig) -> None:
        """The rules between the recipe and the architecture."""
        if self.max_delay >= config.window_steps:
            raise ConfigError(f"personalization config: max_delay ({self.max_delay}) must be shorter than the "
                              f"model's window_steps ({config.window_steps})")
        if config.learn_adaptation_ridge and self.method != "ridge":
            raise ConfigError("personalization config: the model learns the ridge refit's settings "
                              "(learn_adaptation_ridge): set method ridge")

    @property
    def reads_out_only(self) -> bool:
        """True when the inner loop adapts only (part of) the predictor's linear read-out."""
        return bool(self.adapted_parameters) and set(self.adapted_parameters) <= {*READ_OUT, *READ_OUT_TENSORS}

    def replace(self, **changes) -> "PersonalizationConfig":
        return dataclasses.replace(self, **changes)

    def for_inner_loop(self, steps: int | None = None, learning_rate: float | None = None) -> "PersonalizationConfig":
        """The recipe for another step count or learning rate: another inner loop, which the calibration did not
        score, keeps all of its change and fits no lag; the recipe's own inner loop keeps its calibrated values."""
        steps = self.steps if steps is None else int(steps)
        learning_rate = self.learning_rate if learning_rate is None else float(learning_rate)
        if steps == self.steps and learning_rate == self.learning_rate:
            return self
        return self.replace(steps=steps, learning_rate=learning_rate, share=[1.0, 1.0], max_delay=0)

    # -- files -----------------------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, values: dict) -> "PersonalizationConfig":
        if not isinstance(values, dict):
            raise ConfigError(f"personalization config: expected a mapping of settings, got {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"personalization config: unknown setting(s) {unknown}; known: {sorted(known)}")
        try:
            return cls(**values)
        except (TypeError, StrictDataclassError) as exc:
            message = one_line(exc)
            raise ConfigError(message if message.startswith("personalization config") else
                              f"personalization config: {message}") from None

    @classmethod
    def from_legacy(cls, config_values: dict) -> "PersonalizationConfig":
        """The recipe of a `config.json` written before the split (its `adaptation_*` fields)."""
        if float(config_values.get("adaptation_holdout") or 0) > 0:
            warnings.warn("this model's config asks for the do-no-harm rule (adaptation_holdout), which dsaml no "
                          "longer has: personalizing without it", stacklevel=3)
        return cls.from_dict({new: config_values[old] for old, new in LEGACY_FIELDS.items() if old in config_values})

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike) -> "PersonalizationConfig":
        """The recipe of a model folder or Hub repo: its `personalization_config.json`, or, for a folder written
        before the split, its `config.json`'s `adaptation_*` fields."""
        path = _model_file(name_or_path, PERSONALIZATION_CONFIG_NAME)
        if path is not None:
            return cls.from_dict(_read_json(path))
        path = _model_file(name_or_path, "config.json")
        return cls.from_legacy(_read_json(path)) if path is not None else cls()

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        path = Path(folder) / PERSONALIZATION_CONFIG_NAME
        atomic_write_text(path, self.to_json_string())
        return path


def _model_file(name_or_path: str | os.PathLike, filename: str) -> Path | None:
    """A file of a local model folder, or of a Hub repo (downloaded, or from the cache); None when absent."""
    folder = Path(name_or_path)
    if folder.is_dir():
        return folder / filename if (folder / filename).is_file() else None
    from transformers.utils import cached_file

    found = cached_file(str(name_or_path), filename, _raise_exceptions_for_missing_entries=False)
    return Path(found) if found else None


def _read_json(path: Path) -> dict:
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot be read as JSON ({exc})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: must hold a JSON object, got a {type(values).__name__}")
    return values


def personalization_config(model) -> "PersonalizationConfig":
    """The recipe a model personalizes with: the one attached to it (`model.personalization_config`, set when
    dsaml loads or trains it), else the one saved with it (read once from `model.name_or_path`), else the
    default."""
    recipe = getattr(model, "personalization_config", None)
    if recipe is None:
        name = getattr(model, "name_or_path", "") or ""
        recipe = PersonalizationConfig.from_pretrained(name) if name else PersonalizationConfig()
        model.personalization_config = recipe
    return recipe
