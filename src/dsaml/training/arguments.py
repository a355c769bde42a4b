"""The settings of a training run: one dataclass, each field with its help and bounds as field metadata.

A training config (`dsaml.training.config_files`) is a YAML mapping of these fields. `model:` holds `DSAMLConfig`
fields (the architecture), `personalization:` holds `PersonalizationConfig` fields (the inner loop meta-training
learns through); both travel with the saved model, so personalization later adapts exactly as meta-training did.
The documentation's training-argument reference is generated from the metadata (`TrainingArguments.help()`).
"""

# No `from __future__ import annotations`: @strict reads the field types at runtime to validate values.
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub.dataclasses import strict
from huggingface_hub.errors import StrictDataclassError

from dsaml.adaptation.config import LEGACY_FIELDS, PersonalizationConfig
from dsaml.errors import ConfigError, one_line
from dsaml.modeling import DSAMLConfig
from dsaml.modeling.configuration_dsaml import bound_problems, field_help, setting
from dsaml.training.meta import ALGORITHMS

__all__ = ["TrainingArguments"]


@strict
@dataclass
class TrainingArguments:
    # data
    dataset: str = setting("synthetic:small", "A dsaml dataset folder, a Hub dataset repo id, or "
                                              "`synthetic[:size[:seed]]` (the embedded set, built on first use).")
    data_config: str = setting("pdmer_flat", "`pdmer_flat` (each listener's own labels: meta-learning) or `dmer` "
                                             "(averaged labels: plain training).")
    output_dir: str = setting("outputs/run", "Where best/, last/, checkpoints and reports go.")
    model: dict = setting({}, "`DSAMLConfig` fields: the architecture.")
    personalization: dict = setting({}, "`PersonalizationConfig` fields: the inner loop meta-training learns "
                                        "through and personalization runs.")
    init_from: str | None = setting(None, "Start from a saved model (folder or Hub id) instead of a new one.")
    # meta-learning (defaults: the official code)
    algorithm: str = setting("fomaml", f"Meta-learning algorithm: one of {', '.join(ALGORITHMS)}.")
    base_loss_weight: float | int = setting(0.0, "fomaml / maml: add this times the unadapted model's query loss, so the "
                                           "meta-learned model stays a good prediction for a listener nobody has "
                                           "personalized.", minimum=0, maximum=1000)
    support_songs: int = setting(1, "Songs a task adapts on.", minimum=1, maximum=1000)
    query_songs: int = setting(15, "Songs a task's adaptation is scored on.", minimum=1, maximum=10000)
    tasks_per_step: int = setting(16, "Annotator tasks per outer step (a multiple of the number of processes).",
                                  minimum=1, maximum=10000)
    max_steps: int = setting(2000, "Outer steps.", minimum=1, maximum=10_000_000)
    learning_rate: float | int = setting(5e-5, "Outer (Adam) learning rate.", exclusive_minimum=0, maximum=10)
    ridge_learning_rate: float | int | None = setting(None, "Learning rate of the learned ridge settings "
                                                      "(`learn_adaptation_ridge`); None: learning_rate.",
                                                exclusive_minimum=0, maximum=10)
    fit_average_readout: bool = setting(False, "Before the first step (not on resume), refit the output layer by "
                                               "ridge on every training row's labels: the unadapted model predicts "
                                               "the average training listener.")
    calibrate_adaptation: bool = setting(False, "After training, choose the personalization share and longest "
                                                "reaction lag on the final report's validation listeners and save "
                                                "them with best/.")
    weight_decay: float | int = setting(0.0, "Adam weight decay.", minimum=0, maximum=10)
    max_grad_norm: float | int | None = setting(None, "Clip the meta-gradient's norm to this; None: no clipping.",
                                          exclusive_minimum=0, maximum=1e6)
    mixed_precision: str | None = setting(None, "`no` or `bf16`; None: what `accelerate config` says.")
    seed: int = setting(0, "Seed of the initial weights and of every task.", minimum=0, maximum=2**32 - 1)
    # validation (held-out annotators; model selection never sees a test partition)
    validation_every: int = setting(10, "Validate every this many steps.", minimum=1, maximum=10_000_000)
    validation_annotators: float | int = setting(0.2, "Listeners held out of the train partition for validation (a share "
                                                "below 1, or a count), when the dataset has no validation "
                                                "partition.", minimum=0, maximum=100000)
    validation_max_query_songs: int | None = setting(8, "Query songs per validation task; None: all.", minimum=1,
                                                     maximum=100000)
    select_metric: str = setting("validation/after/ccc", "The validation metric that chooses best/.")
    # checkpoints, final evaluation, logging, publishing
    checkpoint_every: int = setting(50, "Save a resumable checkpoint every this many steps.", minimum=1,
                                    maximum=10_000_000)
    keep_checkpoints: int = setting(2, "Checkpoints kept.", minimum=1, maximum=1000)
    resume_from_checkpoint: str | None = setting("auto", "`auto` (the latest in output_dir), a checkpoint "
                                                         "folder, or None.")
    evaluate_test: bool = setting(True, "Score the test partitions in the final report (development runs: "
                                        "false).")
    test_max_query_songs: int | None = setting(None, "Query songs per test task in the final report; None: all.",
                                               minimum=1, maximum=100000)
    report_to: list[str] = setting(["tensorboard"], "Accelerate trackers, used when installed.")
    progress: bool = setting(True, "Progress bars.")
    push_to_hub: bool = setting(False, "Upload best/ to `hub_model_id` at the end.")
    hub_model_id: str | None = setting(None, "The Hub repo to push to, e.g. `your-name/dsaml-deam`.")
    hub_private: bool = setting(False, "Create the Hub repo private.")
    stages: list = setting([], "Stages run one after another by one `dsaml train`, each from the previous "
                               "stage's best model: mappings of the fields above (plus `name`) that replace the "
                               "run's own; `model` and `personalization` are merged. Empty: one stage.")

    def __post_init__(self) -> None:
        self.check()

    @classmethod
    def help(cls) -> dict[str, str]:
        return field_help(cls)

    def check(self) -> None:
        problems = bound_problems(self) + self._choice_problems() + self._model_problems() + self._stage_problems()
        if problems:
            raise ConfigError("invalid training arguments: " + "; ".join(problems))

    def _choice_problems(self) -> list[str]:
        rules = [
            (self.algorithm in ALGORITHMS, f"algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}"),
            (self.data_config in ("pdmer_flat", "dmer"), f"data_config must be 'pdmer_flat' or 'dmer', got "
                                                         f"{self.data_config!r}"),
            (not self.calibrate_adaptation or self.data_config == "pdmer_flat",
             "calibrate_adaptation personalizes validation listeners: it needs data_config pdmer_flat"),
            (self.mixed_precision != "fp16", "mixed_precision 'fp16' is not supported: meta-gradients come from "
                                             "torch.autograd.grad, which fp16 loss scaling does not cover; use "
                                             "'bf16'"),
            (not self.push_to_hub or bool(self.hub_model_id), "push_to_hub needs hub_model_id (e.g. "
                                                              "'your-name/dsaml-deam')"),
            (self.select_metric.startswith("validation/"), f"select_metric must be a validation metric (never "
                                                           f"test), got {self.select_metric!r}"),
        ]
        return [message for ok, message in rules if not ok]

    def _model_problems(self) -> list[str]:
        """What `DSAMLConfig` and `PersonalizationConfig` refuse in `model` / `personalization`, found before any
        data is loaded (a typo would otherwise be stored silently and change nothing)."""
        if not isinstance(self.model, dict) or not isinstance(self.personalization, dict):
            return [f"model and personalization must be mappings, got {self.model!r} and {self.personalization!r}"]
        moved = sorted(k for k in self.model if k in LEGACY_FIELDS)
        if moved:
            return [f"model: {', '.join(moved)} moved to `personalization:` as "
                    f"{', '.join(LEGACY_FIELDS[k] for k in moved)}"]
        unknown = sorted(set(self.model) - {f.name for f in dataclasses.fields(DSAMLConfig)})
        if unknown:
            return [f"unknown model field(s) {unknown} (a typo?); DSAMLConfig fields: "
                    f"{sorted(f.name for f in dataclasses.fields(DSAMLConfig))}"]
        try:
            config = DSAMLConfig(**self.model)
            if not self.init_from:  # a stage's recipe is checked against the model it starts from when built
                self.personalization_config().check_model(config)
            else:
                self.personalization_config()
        except (ValueError, TypeError, StrictDataclassError) as exc:
            return [one_line(exc)]
        return []

    def _stage_problems(self) -> list[str]:
        problems = []
        for i, stage in enumerate(self.stages):
            if not isinstance(stage, dict) or not isinstance(stage.get("name"), str) or not stage["name"].isidentifier():
                problems.append(f"stage {i} must be a mapping with a `name` made of letters, digits and _, got {stage!r}")
            elif "stages" in stage or "output_dir" in stage or "init_from" in stage:
                problems.append(f"stage {stage['name']!r} cannot set stages, output_dir or init_from (the run sets them)")
        names = [s.get("name") for s in self.stages if isinstance(s, dict)]
        if len(set(names)) != len(names):
            problems.append(f"stage names must be unique, got {names}")
        return problems

    def personalization_config(self, start: PersonalizationConfig | None = None) -> PersonalizationConfig:
        """The run's recipe: `personalization` on top of `start` (the model it starts from; default: the
        defaults)."""
        return PersonalizationConfig.from_dict({**(start or PersonalizationConfig()).to_dict(),
                                                **self.personalization})

    @property
    def select_greater_is_better(self) -> bool:
        return not self.select_metric.endswith("rmse") and not self.select_metric.endswith("loss")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def stage_arguments(self) -> "list[tuple[str, TrainingArguments]]":
        """Each stage's own arguments: the run's, with the stage's fields on top. Earlier stages write to
        `output_dir/stages/<name>` and the last to `output_dir` itself (so `best/` is where a one-stage run
        puts it); each stage after the first starts from the previous stage's `best/`."""
        if not self.stages:
            return [("main", self)]
        base = {k: v for k, v in self.to_dict().items() if k != "stages"}
        out, previous = [], self.init_from
        for i, stage in enumerate(self.stages):
            values = {**base, **{k: v for k, v in stage.items() if k not in ("name", "model", "personalization")}}
            values["model"] = {**base["model"], **stage.get("model", {})}
            values["personalization"] = {**base["personalization"], **stage.get("personalization", {})}
            last = i == len(self.stages) - 1
            values["output_dir"] = self.output_dir if last else str(Path(self.output_dir) / "stages" / stage["name"])
            values["init_from"] = previous
            values["push_to_hub"] = self.push_to_hub and last  # only the finished model is published
            args = TrainingArguments.from_dict(values)
            out.append((stage["name"], args))
            previous = str(Path(args.output_dir) / "best")
        return out

    @classmethod
    def from_dict(cls, values: dict) -> "TrainingArguments":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown training argument(s) {unknown}; known: {sorted(known)}")
        values = dict(values)
        for f in dataclasses.fields(cls):  # YAML reads 5e-5 as a string
            if "float" in str(f.type) and isinstance(values.get(f.name), str):
                try:
                    values[f.name] = float(values[f.name])
                except ValueError:
                    raise ConfigError(f"invalid training arguments: {f.name} must be a number, got "
                                      f"{values[f.name]!r}") from None
        if isinstance(values.get("report_to"), str):
            values["report_to"] = [] if values["report_to"] in ("none", "") else [values["report_to"]]
        try:
            return cls(**values)
        except StrictDataclassError as exc:  # a value of the wrong type
            raise ConfigError(f"invalid training arguments: {one_line(exc)}") from None
