"""The settings of a training run: one dataclass, read from a YAML file and overridden from the command line.

`dsaml train --config synthetic_small` reads `dsaml/configs/synthetic_small.yaml` (shipped with the package);
any other value is a path to a YAML file. Keys are the fields below; `model:` holds `DSAMLConfig` fields
(architecture and the inner loop: `adaptation_steps`, `adaptation_lr`, `adapted_parameters`, `window_steps`),
which travel with the saved model so personalization later adapts exactly as meta-training did.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from dsaml.errors import one_line
from dsaml.modeling import DSAMLConfig
from dsaml.training.meta import ALGORITHMS


@dataclass
class TrainingArguments:
    # data
    dataset: str = "synthetic:small"  # a dsaml dataset folder, a Hub dataset repo id, or "synthetic[:size[:seed]]"
    data_config: str = "pdmer_flat"  # "pdmer_flat" (per-annotator labels, meta-learning) or "dmer" (averaged labels)
    output_dir: str = "outputs/run"
    # model: DSAMLConfig overrides, or start from a saved model (folder or Hub id)
    model: dict = field(default_factory=dict)
    init_from: str | None = None
    # meta-learning (defaults: the official code)
    algorithm: str = "fomaml"
    base_loss_weight: float = 0.0  # fomaml/maml: + this x the unadapted model's query loss (`dsaml.meta.task_gradient`)
    support_songs: int = 1
    query_songs: int = 15
    tasks_per_step: int = 16
    max_steps: int = 2000
    learning_rate: float = 5e-5
    ridge_learning_rate: float | None = None  # the learned ridge settings' (`learn_adaptation_ridge`); None: learning_rate
    # before the first step (not on resume), refit the output layer by ridge on every training row's labels: the
    # unadapted model predicts the average training listener (`dsaml.average_readout`)
    fit_average_readout: bool = False
    average_readout_ridge: float = 1e-3
    # after training, choose how far personalization moves (the model's `adaptation_share`) on the validation
    # listeners of the final report (`dsaml.calibration`), and save it in best/
    calibrate_adaptation: bool = False
    weight_decay: float = 0.0
    max_grad_norm: float | None = None
    mixed_precision: str | None = None  # None: what `accelerate launch` / `accelerate config` says
    seed: int = 0
    # validation (on held-out annotators of the TRAIN partition; model selection never sees the test partition)
    validation_every: int = 10
    validation_annotators: float = 0.2  # only when the dataset has no `validation` partition of its own
    validation_songs: int = 0
    validation_max_query_songs: int | None = 8
    select_metric: str = "validation/after/ccc"
    # checkpoints, final evaluation, logging, publishing
    checkpoint_every: int = 50
    keep_checkpoints: int = 2
    resume_from_checkpoint: str | None = "auto"  # "auto": the latest in output_dir/checkpoints; a path; None
    evaluate_test: bool = True
    test_max_query_songs: int | None = None
    # the final report scores every validation and test listener this many times, each with another support song
    evaluation_support_repeats: int = 4
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])  # Accelerate trackers, when installed
    progress: bool = True
    push_to_hub: bool = False
    hub_model_id: str | None = None
    hub_private: bool = False
    # Stages run one after another by the same `dsaml train`, each from the previous stage's best model, e.g.
    # supervised pre-training on averaged labels, then meta-training on listeners. A stage is a mapping of the
    # fields above (plus `name`) that replace the run's own; `model` fields are merged. Empty: one stage.
    stages: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        problems = []
        if self.algorithm not in ALGORITHMS:
            problems.append(f"algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}")
        if self.data_config not in ("pdmer_flat", "dmer"):
            problems.append(f"data_config must be 'pdmer_flat' or 'dmer', got {self.data_config!r}")
        for name in ("support_songs", "query_songs", "tasks_per_step", "max_steps", "validation_every",
                     "checkpoint_every", "keep_checkpoints", "evaluation_support_repeats"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.base_loss_weight >= 0:  # `not >=`: NaN fails too
            problems.append(f"base_loss_weight must be >= 0, got {self.base_loss_weight}")
        if not (0 < self.learning_rate < math.inf):
            problems.append(f"learning_rate must be a finite number > 0, got {self.learning_rate}")
        if self.ridge_learning_rate is not None and not (0 < self.ridge_learning_rate < math.inf):
            problems.append(f"ridge_learning_rate must be a finite number > 0 (or null), got {self.ridge_learning_rate}")
        if not (0 < self.average_readout_ridge < math.inf):  # 0: no unique solution when a feature is constant
            problems.append(f"average_readout_ridge must be a finite number > 0, got {self.average_readout_ridge}")
        if not (0 <= self.weight_decay < math.inf):
            problems.append(f"weight_decay must be a finite number >= 0, got {self.weight_decay}")
        if self.max_grad_norm is not None and not (0 < self.max_grad_norm < math.inf):
            problems.append(f"max_grad_norm must be a finite number > 0 (or null), got {self.max_grad_norm}")
        if not isinstance(self.model, dict):
            problems.append(f"model must be a mapping of DSAMLConfig fields, got {self.model!r}")
        else:
            unknown = sorted(set(self.model) - model_fields())
            if unknown:
                problems.append(f"unknown model field(s) {unknown} (a typo?); DSAMLConfig fields: "
                                f"{sorted(model_fields())}")
            else:
                problems += model_problems(self.model)
        if self.calibrate_adaptation and self.data_config != "pdmer_flat":
            problems.append("calibrate_adaptation personalizes validation listeners: it needs data_config pdmer_flat")
        if self.mixed_precision == "fp16":
            problems.append("mixed_precision 'fp16' is not supported: meta-gradients come from torch.autograd.grad, "
                            "which fp16 loss scaling does not cover; use 'bf16'")
        if self.push_to_hub and not self.hub_model_id:
            problems.append("push_to_hub needs hub_model_id (e.g. 'your-name/dsaml-deam')")
        if not self.select_metric.startswith("validation/"):
            problems.append(f"select_metric must be a validation metric (never test), got {self.select_metric!r}")
        for i, stage in enumerate(self.stages):
            if not isinstance(stage, dict) or not isinstance(stage.get("name"), str) or not stage["name"].isidentifier():
                problems.append(f"stage {i} must be a mapping with a `name` made of letters, digits and _, got {stage!r}")
            elif "stages" in stage or "output_dir" in stage or "init_from" in stage:
                problems.append(f"stage {stage['name']!r} cannot set stages, output_dir or init_from (the run sets them)")
        names = [s.get("name") for s in self.stages if isinstance(s, dict)]
        if len(set(names)) != len(names):
            problems.append(f"stage names must be unique, got {names}")
        if problems:
            raise ValueError("invalid training arguments: " + "; ".join(problems))

    @property
    def select_greater_is_better(self) -> bool:
        return not self.select_metric.endswith("rmse") and not self.select_metric.endswith("loss")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def stage_arguments(self) -> list[tuple[str, TrainingArguments]]:
        """Each stage's own arguments: the run's, with the stage's fields on top. Earlier stages write to
        `output_dir/stages/<name>` and the last to `output_dir` itself (so `best/` is where a one-stage run
        puts it); each stage after the first starts from the previous stage's `best/`."""
        if not self.stages:
            return [("main", self)]
        base = {k: v for k, v in self.to_dict().items() if k != "stages"}
        out, previous = [], self.init_from
        for i, stage in enumerate(self.stages):
            values = {**base, **{k: v for k, v in stage.items() if k not in ("name", "model")}}
            values["model"] = {**base["model"], **stage.get("model", {})}
            last = i == len(self.stages) - 1
            values["output_dir"] = self.output_dir if last else str(Path(self.output_dir) / "stages" / stage["name"])
            values["init_from"] = previous
            values["push_to_hub"] = self.push_to_hub and last  # only the finished model is published
            args = TrainingArguments.from_dict(values)
            out.append((stage["name"], args))
            previous = str(Path(args.output_dir) / "best")
        return out

    @classmethod
    def from_dict(cls, values: dict) -> TrainingArguments:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training argument(s) {unknown}; known: {sorted(known)}")
        values = dict(values)
        # YAML reads 5e-5 as a string
        for name in ("learning_rate", "ridge_learning_rate", "average_readout_ridge", "weight_decay",
                     "validation_annotators", "base_loss_weight"):
            if isinstance(values.get(name), str):
                values[name] = float(values[name])
        if isinstance(values.get("max_grad_norm"), str):
            values["max_grad_norm"] = float(values["max_grad_norm"])
        if isinstance(values.get("report_to"), str):
            values["report_to"] = [] if values["report_to"] in ("none", "") else [values["report_to"]]
        return cls(**values)


def model_fields() -> set[str]:
    """The keys a config's `model:` mapping may hold: `DSAMLConfig`'s fields (a typo there would otherwise be
    stored on the config silently and change nothing)."""
    return {f.name for f in dataclasses.fields(DSAMLConfig)}


def model_problems(model: dict) -> list[str]:
    """What `DSAMLConfig` refuses in `model`, found before any data is loaded."""
    from huggingface_hub.errors import StrictDataclassError


    try:
        DSAMLConfig(**model)
    except (ValueError, TypeError, StrictDataclassError) as exc:
        return [f"model: {one_line(exc)}"]
    return []


def config_path(name_or_path: str | Path) -> Path:
    """A shipped config by name (`synthetic_small`, `deam_pdmer`, ...) or a YAML file path."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    shipped = resources.files("dsaml.training") / "configs" / f"{name_or_path}.yaml"
    if shipped.is_file():
        return Path(str(shipped))
    available = sorted(p.name[:-5] for p in (resources.files("dsaml.training") / "configs").iterdir() if p.name.endswith(".yaml"))
    raise FileNotFoundError(f"training config {name_or_path!r} is neither a YAML file nor a shipped config {available}")


def load_arguments(name_or_path: str | Path | None, overrides: dict | None = None) -> TrainingArguments:
    """Arguments from a YAML config (shipped name or path), with `overrides` applied on top
    (`model` overrides are merged key by key)."""
    values: dict = {}
    if name_or_path is not None:
        path = config_path(name_or_path)
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: a training config must be a YAML mapping, got {type(loaded).__name__}")
        values.update(loaded)
    for key, value in (overrides or {}).items():
        if key == "model":
            values["model"] = {**values.get("model", {}), **value}
        else:
            values[key] = value
    return TrainingArguments.from_dict(values)
