"""The model a training run starts from (a new one, or a stage's predecessor) and its optimizer's groups."""

from __future__ import annotations

import torch

from dsaml.adaptation.config import PersonalizationConfig
from dsaml.adaptation.ridge import ridge_settings
from dsaml.modeling import DSAMLConfig, DSAMLForDynamicEmotionRecognition
from dsaml.modeling.configuration_dsaml import LABEL_NAMES
from dsaml.modeling.predictor_dsaml import RidgeSettings
from dsaml.training.arguments import TrainingArguments
from dsaml.training.meta import trainable_parameters

__all__ = ["build_model", "parameter_groups", "ridge_metrics"]


def build_model(args: TrainingArguments):
    """A new model, or the one the stage starts from with the stage's `model` fields on top; either way with the
    run's `PersonalizationConfig` attached (`model.personalization_config`)."""
    if args.init_from:
        model = DSAMLForDynamicEmotionRecognition.from_pretrained(args.init_from, dtype=torch.float32)
        for key, value in args.model.items():
            setattr(model.config, key, value)
        model.config.validate_dsaml()
        # a share and lag calibrated for the weights it starts from say nothing about the weights this run learns
        start = PersonalizationConfig.from_pretrained(args.init_from).replace(share=[1.0, 1.0], max_delay=0)
        fresh = False
    else:
        model = DSAMLForDynamicEmotionRecognition(DSAMLConfig(**args.model))
        start, fresh = None, True
    recipe = args.personalization_config(start)
    recipe.check_model(model.config)
    model.personalization_config = recipe
    _match_ridge_settings(model, recipe, fresh)
    return model


def _match_ridge_settings(model, recipe: PersonalizationConfig, fresh: bool) -> None:
    """Learned ridge settings (`learn_adaptation_ridge`) start at the recipe's values: in a new model, and where a
    stage turns learning on (the saved model it starts from had none); a stage that turns it off drops them."""
    learned = bool(model.config.learn_adaptation_ridge)
    if not learned:
        model.predictor.ridge = None
        return
    if model.predictor.ridge is None:
        model.predictor.ridge, fresh = RidgeSettings(), True
    if fresh:
        model.predictor.ridge.reset(recipe.ridge_strength, recipe.level_share)


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
        settings = dict(zip(("strength", "level_share"), ridge_settings(model, model.personalization_config)))
    return {f"ridge/{kind}_{dim}": float(values[i]) for kind, values in settings.items()
            for i, dim in enumerate(LABEL_NAMES)}
