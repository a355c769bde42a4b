"""Personalizing a DSAML model to one listener from ONE annotated song: the meta-learned inner loop.

Personalization runs the inner loop of meta-training (`dsaml.adaptation.adapt`): the model config's
`adaptation_steps`, `adaptation_lr` and `adapted_parameters`, first-order SGD on every `window_steps`-long
window of the support song (`dsaml.batches.support_batch`), with the model in TRAIN mode (dropout on, as in
the meta-training inner loop the initialization was learned for). Dropout makes the result depend on the
random state, so the inner loop runs under a fixed torch seed (`seed=0` by default): the same inputs always
give the same personalized model. Where the config asks for it (`adaptation_holdout`), the do-no-harm rule of
`dsaml.shrinkage` decides how far to move, and the share calibrated on validation listeners
(`adaptation_share`, `dsaml.calibration`) scales the move per dimension. Storing the result (full folder or LoRA
adapter): `dsaml.adapters`.
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

from dsaml.adaptation.inner_loop import adapt
from dsaml.adaptation.tensors import DELAY, adaptable_parameters, functional_loss, named_tensors
from dsaml.audio.reader import load_audio
from dsaml.data.alignment import AlignedSong, align_annotations
from dsaml.data.annotation_files import read_annotations
from dsaml.data.batches import support_batch
from dsaml.errors import AudioError
from dsaml.modeling import DSAMLFeatureExtractor, DSAMLForDynamicEmotionRecognition
from dsaml.modeling.step_audio_dsaml import step_samples
from dsaml.personalization.shrinkage import choose_shrinkage, shrink

logger = logging.getLogger(__name__)

__all__ = ["Personalization", "default_delay", "default_share", "personalize_audio", "personalize_song",
           "personalized_copy"]


def personalized_copy(model, support: dict[str, torch.Tensor], *, steps: int | None = None,
                      lr: float | None = None, seed: int = 0, max_delay: int | None = None):
    """A copy of `model` adapted to `support` with the meta-learned inner loop alone; `model` is left untouched.

    The inner loop runs in training mode, as in meta-training, with dropout seeded by `seed` (reproducible), and
    the ridge refit chooses a reaction lag of up to `max_delay` steps (default: `default_delay`).
    No do-no-harm rule and no calibrated share: `personalize_song` adds those (what `dsaml personalize` runs)."""
    config = model.config
    if max_delay is None:
        max_delay = default_delay(config, config.adaptation_steps if steps is None else steps,
                                  config.adaptation_lr if lr is None else lr)
    adapted = copy.deepcopy(model)
    adapted.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fast = adapt(adapted, support, steps=steps, lr=lr, max_delay=max_delay)
    with torch.no_grad():
        tensors = named_tensors(adapted)
        for name, value in fast.items():
            tensors[name].copy_(value)
    return adapted.eval()


def default_share(config, steps: int, lr: float) -> tuple[float, float]:
    """The share of the adapted change personalization keeps unless told otherwise: the config's calibrated
    `adaptation_share` for the config's own inner loop; another step count or learning rate is another inner
    loop, which the calibration did not score, so it keeps all of its change."""
    if _own_loop(config, steps, lr):
        return tuple(float(a) for a in config.adaptation_share)
    return (1.0, 1.0)


def default_delay(config, steps: int, lr: float) -> int:
    """The longest reaction lag personalization fits unless told otherwise: the config's calibrated
    `adaptation_max_delay` for the config's own inner loop (as `default_share`), else none."""
    return int(config.adaptation_max_delay) if _own_loop(config, steps, lr) else 0


def _own_loop(config, steps: int, lr: float) -> bool:
    return int(steps) == int(config.adaptation_steps) and float(lr) == float(config.adaptation_lr)


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

    The support song is cut into `config.window_steps` windows, batched, and `steps` SGD steps of size `lr`
    (default: the config's meta-training values) are taken on the config's `adapted_parameters`, in train mode
    under `torch.manual_seed(seed)`. With `config.adaptation_holdout > 0` the result is shrunk toward the base
    by the do-no-harm rule (`dsaml.shrinkage`), then by `share` (arousal, valence; default `default_share`:
    the config's calibrated share for the config's own inner loop); `info["shrinkage"]`: the share of the step
    kept for arousal and valence, `info["note"]` when it is none of it. The ridge refit also chooses the
    listener's reaction lag up to `max_delay` steps (default: the config's `adaptation_max_delay` for the
    config's own inner loop, else 0), `info["delay_steps"]`.
    """
    config = model.config
    steps = config.adaptation_steps if steps is None else int(steps)
    lr = config.adaptation_lr if lr is None else float(lr)
    max_delay = default_delay(config, steps, lr) if max_delay is None else int(max_delay)
    if max_delay and config.adaptation_holdout > 0:
        raise ValueError("a reaction-lag delay and the do-no-harm rule (adaptation_holdout) cannot be combined")
    songs = [support] if isinstance(support, AlignedSong) else list(support)
    batch = support_batch(songs, config.window_steps)  # every window of the support song, as in evaluation
    params = adaptable_parameters(model)
    before = _support_loss(model, batch, params)

    def adapt_on(parts: Sequence[AlignedSong]) -> tuple[DSAMLForDynamicEmotionRecognition, dict[str, torch.Tensor]]:
        # the inner loop of meta-training (train mode, seeded dropout) on a copy
        with torch.enable_grad():
            adapted_copy = personalized_copy(model, support_batch(parts, config.window_steps), steps=steps, lr=lr,
                                             seed=seed, max_delay=max_delay)
        named = named_tensors(adapted_copy)
        return adapted_copy, {n: named[n].detach().clone() for n in (*params, *([DELAY] if max_delay else []))}

    adapted, fast = adapt_on(songs)
    alpha, shrink_info = (1.0, 1.0), {}
    if config.adaptation_holdout > 0:  # the do-no-harm rule: how far toward `fast`, judged on the song's end
        alpha, shrink_info = choose_shrinkage(model, songs, config.adaptation_holdout, lambda p: adapt_on(p)[1])
    share = tuple(float(a) for a in (default_share(config, steps, lr) if share is None else share))
    alpha = (alpha[0] * share[0], alpha[1] * share[1])
    if alpha != (1.0, 1.0):
        fast = shrink(model, fast, alpha)
        with torch.no_grad():
            named = named_tensors(adapted)
            for name, value in fast.items():
                named[name].copy_(value)
    after = _support_loss(model, batch, fast)
    info = {
        "user": user, "steps": steps, "lr": lr, "seed": seed, "support_songs": [s.song_id for s in songs],
        "support_steps": int(sum(s.num_steps for s in songs)), "adapted_parameters": list(config.adapted_parameters),
        "support_loss_before": before, "support_loss_after": after, "mode": "train (dropout), fixed seed",
        "shrinkage": list(alpha), "adaptation_share": list(share), "max_delay": int(max_delay),
        "delay_steps": [int(d) for d in fast[DELAY]] if DELAY in fast else [0, 0], **shrink_info,
    }
    if share == (0.0, 0.0):
        info["note"] = ("this model keeps none of the adapted change (adaptation_share 0 / 0, chosen on its "
                        "validation listeners, whom one song did not help): the personalized curves are the base "
                        "model's")
    if after > before:
        advice = ("the ridge's squared-error fit does not lower this loss here; try a larger adaptation_ridge"
                  if config.adaptation_method == "ridge" else
                  f"the inner learning rate ({lr:g}) or step count ({steps}) is too large for this song; try a "
                  "smaller lr or fewer steps")
        logger.warning("personalizing user %r on %s made the fit to the support song worse (loss %.4f -> %.4f): %s",
                       user, ", ".join(info["support_songs"]), before, after, advice)
    return Personalization(adapted, fast, user, steps, lr, seed, before, after, info)


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
