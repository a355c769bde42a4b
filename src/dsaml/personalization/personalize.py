"""Personalizing a DSAML model to one listener from ONE annotated song: the meta-learned inner loop.

Personalization runs the inner loop of meta-training (`dsaml.adaptation.inner_loop.adapt`) with the model's
`PersonalizationConfig`: its steps, learning rate and adapted parameters (or the ridge refit), on every
`window_steps`-long window of the support song (`dsaml.data.batches.support_batch`), with the model in TRAIN mode
(dropout on, as in the meta-training inner loop the initialization was learned for). Dropout makes the result
depend on the random state, so the inner loop runs under a fixed torch seed (`seed=0` by default): the same
inputs always give the same personalized model. The recipe's share, calibrated on validation listeners
(`dsaml.training.calibration`), then scales the move per dimension (`dsaml.personalization.shrinkage`). Storing
the result (full folder or LoRA adapter): `dsaml.personalization.adapters`.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from dsaml.adaptation.config import PersonalizationConfig, personalization_config
from dsaml.adaptation.inner_loop import adapt
from dsaml.adaptation.tensors import DELAY, adaptable_parameters, functional_loss, named_tensors
from dsaml.audio.reader import load_audio
from dsaml.data.alignment import AlignedSong, align_annotations
from dsaml.data.annotation_files import read_annotations
from dsaml.data.batches import support_batch
from dsaml.errors import AudioError
from dsaml.modeling import DSAMLFeatureExtractor, DSAMLForDynamicEmotionRecognition
from dsaml.modeling.step_audio_dsaml import step_samples
from dsaml.personalization.shrinkage import shrink

logger = logging.getLogger(__name__)

__all__ = ["Personalization", "personalize_audio", "personalize_song", "personalized_copy"]


def personalized_copy(model, support: dict[str, torch.Tensor], recipe: PersonalizationConfig, *, seed: int = 0):
    """A copy of `model` adapted to `support` by the recipe's inner loop alone (no share); `model` is left
    untouched. The inner loop runs in training mode, as in meta-training, with dropout seeded by `seed`."""
    adapted = copy.deepcopy(model)
    adapted.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fast = adapt(adapted, support, recipe)
    _load(adapted, fast)
    return adapted.eval()


def _load(model, tensors: Mapping[str, torch.Tensor]) -> None:
    with torch.no_grad():
        named = named_tensors(model)
        for name, value in tensors.items():
            named[name].copy_(value)


@dataclass
class Personalization:
    """The result of personalizing: the adapted model and what was done."""

    model: DSAMLForDynamicEmotionRecognition  # a copy of the base with the fast weights (eval mode)
    fast_weights: dict[str, torch.Tensor]
    user: str
    steps: int
    lr: float
    seed: int
    support_loss_before: float
    support_loss_after: float
    info: dict = field(default_factory=dict)


def _support_loss(model: nn.Module, batch: Mapping[str, torch.Tensor], params: Mapping[str, torch.Tensor]) -> float:
    """The support loss in eval mode (no dropout): how well `params` fit the support song."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return float(functional_loss(model, params, batch))
    finally:
        model.train(was_training)


def personalize_song(
    model: DSAMLForDynamicEmotionRecognition,
    support: AlignedSong | Sequence[AlignedSong],
    *,
    user: str = "user",
    steps: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    share: Sequence[float] | None = None,
    max_delay: int | None = None,
) -> Personalization:
    """Adapt `model` to one listener from aligned support song(s). `model` is not modified.

    The recipe is the model's (`personalization_config`); `steps` / `lr` change its inner loop, which then keeps
    its whole change and fits no lag (`PersonalizationConfig.for_inner_loop`); `share` (arousal, valence) and
    `max_delay` replace the recipe's. `info["shrinkage"]`: the share of the change kept, `info["delay_steps"]`:
    the fitted reaction lag, `info["note"]` when none of the change is kept."""
    recipe = personalization_config(model).for_inner_loop(steps, lr)
    recipe = recipe.replace(**({} if share is None else {"share": list(share)}),
                            **({} if max_delay is None else {"max_delay": int(max_delay)}))
    songs = [support] if isinstance(support, AlignedSong) else list(support)
    batch = support_batch(songs, model.config.window_steps)  # every window of the support song, as in evaluation
    params = adaptable_parameters(model, recipe.adapted_parameters)
    before = _support_loss(model, batch, params)
    with torch.enable_grad():
        adapted = personalized_copy(model, batch, recipe, seed=seed)
    named = named_tensors(adapted)
    fast = {n: named[n].detach().clone() for n in (*params, *([DELAY] if recipe.max_delay else []))}
    alpha = (float(recipe.share[0]), float(recipe.share[1]))
    if alpha != (1.0, 1.0):
        fast = shrink(model, fast, alpha)
        _load(adapted, fast)
    after = _support_loss(model, batch, fast)
    info = _report(recipe, user, seed, songs, before, after, fast)
    if after > before:
        advice = ("the ridge's squared-error fit does not lower this loss here; try a larger ridge_strength"
                  if recipe.method == "ridge" else
                  f"the inner learning rate ({recipe.learning_rate:g}) or step count ({recipe.steps}) is too large "
                  "for this song; try a smaller lr or fewer steps")
        logger.warning("personalizing user %r on %s made the fit to the support song worse (loss %.4f -> %.4f): %s",
                       user, ", ".join(info["support_songs"]), before, after, advice)
    return Personalization(adapted, fast, user, recipe.steps, recipe.learning_rate, seed, before, after, info)


def _report(recipe: PersonalizationConfig, user: str, seed: int, songs: Sequence[AlignedSong], before: float,
            after: float, fast: Mapping[str, torch.Tensor]) -> dict:
    """What `personalize_song` did, as saved with the result (`dsaml_adapter.json`)."""
    info = {
        "user": user, "steps": recipe.steps, "lr": recipe.learning_rate, "seed": seed,
        "support_songs": [s.song_id for s in songs], "support_steps": int(sum(s.num_steps for s in songs)),
        "adapted_parameters": list(recipe.adapted_parameters), "support_loss_before": before,
        "support_loss_after": after, "mode": "train (dropout), fixed seed", "shrinkage": list(recipe.share),
        "adaptation_share": list(recipe.share), "max_delay": int(recipe.max_delay),
        "delay_steps": [int(d) for d in fast[DELAY]] if DELAY in fast else [0, 0],
    }
    if tuple(recipe.share) == (0.0, 0.0):
        info["note"] = ("this model keeps none of the adapted change (share 0 / 0, chosen on its validation "
                        "listeners, whom one song did not help): the personalized curves are the base model's")
    return info


def personalize_audio(
    model: DSAMLForDynamicEmotionRecognition,
    extractor: DSAMLFeatureExtractor,
    audio: str | os.PathLike,
    annotations: str | os.PathLike | Mapping,
    *,
    user: str = "user",
    steps: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    value_range: tuple[float, float] | None = (-1.0, 1.0),
) -> Personalization:
    """Personalize from an audio file and its annotation (a CSV/JSON path, or a `read_annotations` dict)."""
    config = model.config
    if config.input_type != "log_mel":
        raise ValueError(f"personalizing from audio needs a log_mel model, this one takes {config.input_type!r}")
    name = None
    if not isinstance(annotations, Mapping):
        name = str(annotations)
        annotations = read_annotations(annotations, config.step_seconds)
    wave, rate = load_audio(audio)
    try:
        resampled = extractor.prepare_waveform(wave, rate, name=str(audio))
    except ValueError as exc:
        raise AudioError(str(exc)) from exc
    patches = extractor.log_mel_patches(resampled)
    harmonic = extractor.harmonic_patches(resampled) if config.harmonic_features else None
    song = align_annotations(patches, annotations, step_seconds=config.step_seconds, song_id=Path(audio).stem,
                             annotator=user, value_range=value_range,
                             annotation_name=name or "annotation", harmonic=harmonic)
    if config.global_encoder == "pretrained":  # global_input_values: the song at the model rate (as SongStore)
        song = AlignedSong(song.song_id, song.annotator, song.features, song.labels, song.start_step,
                           step_samples(resampled, song.start_step, song.start_step + song.num_steps,
                                        extractor.samples_per_step), song.harmonic)
    result = personalize_song(model, song, user=user, steps=steps, lr=lr, seed=seed)
    result.info.update({"audio": str(audio), "annotations": name})
    return result
