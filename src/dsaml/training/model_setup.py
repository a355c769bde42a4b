"""The model a training run starts from (a new one, or a stage's predecessor) and its optimizer's groups."""

from __future__ import annotations

import torch

from dsaml.adaptation.ridge import ridge_settings
from dsaml.modeling import DSAMLConfig, DSAMLForDynamicEmotionRecognition
from dsaml.modeling.modeling_dsaml import LABEL_NAMES, RidgeSettings
from dsaml.training.arguments import TrainingArguments
from dsaml.training.meta import trainable_parameters

__all__ = ["build_model", "parameter_groups", "ridge_metrics"]


def build_model(args: TrainingArguments):
    if args.init_from:
        model = DSAMLForDynamicEmotionRecognition.from_pretrained(args.init_from, dtype=torch.float32)
        # a share calibrated for the weights it starts from says nothing about the weights this run learns
        model.config.adaptation_share = [1.0, 1.0]
        model.config.adaptation_max_delay = 0
        for key, value in args.model.items():
            setattr(model.config, key, value)
        model.config.validate_dsaml()
        _match_ridge_settings(model)
        return model
    return DSAMLForDynamicEmotionRecognition(DSAMLConfig(**args.model))


def _match_ridge_settings(model) -> None:
    """A stage that turns `learn_adaptation_ridge` on adds the learned settings, started from the config's values
    (the saved model it starts from had none); one that turns it off drops them."""
    learned = bool(model.config.learn_adaptation_ridge)
    if learned and model.predictor.ridge is None:
        model.predictor.ridge = RidgeSettings(model.config)
    elif not learned:
        model.predictor.ridge = None


def parameter_groups(model, args: TrainingArguments) -> list[dict]:
    """The optimizer's groups: every trainable parameter at `learning_rate`, the learned ridge settings (four
    scalars on log / logit scales) at `ridge_learning_rate` when it is set."""
    params = trainable_parameters(model)
    ridge = [p for n, p in params.items() if n.startswith("predictor.ridge.")]
    rest = [p for n, p in params.items() if not n.startswith("predictor.ridge.")]
    if not ridge or args.ridge_learning_rate is None:
        return [{"params": rest + ridge}]
    return [{"params": rest}, {"params": ridge, "lr": args.ridge_learning_rate}]


def ridge_metrics(model) -> dict[str, float]:
    """The learned ridge settings (`learn_adaptation_ridge`) after the step, e.g. `ridge/level_share_valence`."""
    if getattr(model.predictor, "ridge", None) is None:
        return {}
    with torch.no_grad():
        settings = dict(zip(("strength", "level_share"), ridge_settings(model)))
    return {f"ridge/{kind}_{dim}": float(values[i]) for kind, values in settings.items()
            for i, dim in enumerate(LABEL_NAMES)}
