"""Personalize a DSAML model to one listener from ONE annotated song, and load personalized models.

Personalization runs the meta-learned inner loop (`dsaml.adaptation.adapt`) exactly as meta-training does: the
model config's `adaptation_steps`, `adaptation_lr` and `adapted_parameters`, first-order SGD on the support song
cut into `window_steps`-long windows (`dsaml.examples.windows`), with the model in TRAIN mode (dropout on, as in
the meta-training inner loop the initialization was learned for). Dropout makes the result depend on the random
state, so the inner loop runs under a fixed torch seed (`seed=0` by default): the same inputs always give the
same personalized model.

Two storage modes:

* `full`: the adapted model, saved with `save_pretrained` (+ feature extractor): a complete model folder.
* `lora`: a standard PEFT LoRA adapter per user (a few KB). PEFT cannot wrap `nn.LSTM`, so the adapter covers the
  `nn.Linear` layers: the full inner loop is run as above, then each adapted Linear's change `W' - W` is stored as
  its rank-`r` truncated SVD in `lora_B @ lora_A` (scaling `lora_alpha / r = 1`) and its bias change in the LoRA
  bias (`lora_bias=True`). Changes to other parameters (LSTM, LayerNorm, convolutions, embeddings) are not stored.
  The adapter folder also holds `dsaml_adapter.json` with a fingerprint of the base weights, so an adapter is
  never silently applied to another base model.

Several users share one base: `load_personalized(model_dir, adapter_dir, user)` loads a user's adapter from a
folder of per-user adapters, `PeftModel.load_adapter` / `set_adapter` switch between users.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dsaml.adaptation import adaptable_parameters, functional_loss
from dsaml.audio import AudioError, load_audio
from dsaml.episodes import personalized_copy, support_batch
from dsaml.examples import AlignedSong, AnnotationError, align, song_patches
from dsaml.files import make_readable
from dsaml.modeling import DSAMLConfig, DSAMLFeatureExtractor, DSAMLForDynamicEmotionRecognition

ADAPTER_INFO = "dsaml_adapter.json"
# Non-Linear modules a LoRA adapter stores whole by default: the local CNN (its convolutions and GroupNorms):
# ~1.3k parameters (+7 KB) that lift the share of the full-mode gain a rank-4 adapter keeps on synthetic:small.
logger = logging.getLogger(__name__)
DEFAULT_FULL_MODULES = ("dsaml.features.local_cnn.*",)
PERSONALIZATION_INFO = "dsaml_personalization.json"

__all__ = [
    "ADAPTER_INFO",
    "AdapterError",
    "DEFAULT_FULL_MODULES",
    "Personalization",
    "UnknownUserError",
    "align_annotations",
    "base_fingerprint",
    "known_users",
    "load_personalized",
    "lora_adapter",
    "main",
    "personalize",
    "personalize_song",
    "push_adapters",
    "read_annotations",
    "save_full",
    "save_lora",
]


class AdapterError(ValueError):
    """An adapter that cannot be applied (another base model, missing files, ...)."""


class UnknownUserError(KeyError):
    """A user with no adapter in the adapter folder; the message lists the known users."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


# ---------------------------------------------------------------------------------------------------------------
# annotations


def read_annotations(path: str | os.PathLike, step_seconds: float = 0.5) -> dict:
    """Read an annotation curve: `{"start_seconds", "arousal", "valence"}`.

    Accepted formats:
      * CSV with columns `time` (or `time_seconds`; seconds at the START of each 0.5 s step), `arousal`, `valence`;
      * the JSON written by `dsaml predict` (`{"time_seconds": [...], "arousal": [...], "valence": [...]}`), so a
        prediction can be corrected by hand and fed back.
    Times must form a regular grid of `step_seconds` (they may start later than 0, e.g. DEAM's 15 s).
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"{path}: annotation file not found")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, list):
                data = pd.DataFrame(data).to_dict(orient="list")
            frame = pd.DataFrame({k: data[k] for k in data if k in ("time", "time_seconds", "arousal", "valence")})
        else:
            frame = pd.read_csv(path, sep=None, engine="python")
    except (ValueError, KeyError, TypeError, json.JSONDecodeError, pd.errors.ParserError) as exc:
        raise AnnotationError(f"{path}: cannot read the annotation ({exc})") from exc
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    time_col = "time" if "time" in frame.columns else "time_seconds" if "time_seconds" in frame.columns else None
    missing = [c for c in ("arousal", "valence") if c not in frame.columns] + ([] if time_col else ["time"])
    if missing:
        raise AnnotationError(
            f"{path}: missing column(s) {missing}; expected `time` (seconds), `arousal`, `valence` "
            f"(found {list(frame.columns)})"
        )
    if len(frame) == 0:
        raise AnnotationError(f"{path}: the annotation has no rows")
    try:
        times = frame[time_col].to_numpy(dtype=np.float64)
        arousal = frame["arousal"].to_numpy(dtype=np.float32)
        valence = frame["valence"].to_numpy(dtype=np.float32)
    except (ValueError, TypeError) as exc:
        raise AnnotationError(f"{path}: non-numeric values ({exc})") from exc
    if not np.isfinite(times).all():
        raise AnnotationError(f"{path}: missing or non-finite time values")
    expected = times[0] + step_seconds * np.arange(times.size)
    off = np.flatnonzero(np.abs(times - expected) > 1e-3)
    if off.size:
        i = int(off[0])
        raise AnnotationError(
            f"{path}: times must be a regular {step_seconds} s grid (one row per step); row {i} has time "
            f"{times[i]:g} s, expected {expected[i]:g} s"
        )
    return {"start_seconds": round(float(times[0]), 6), "arousal": arousal, "valence": valence}


def align_annotations(
    patches: torch.Tensor,
    annotation: Mapping,
    *,
    step_seconds: float,
    song_id: str,
    annotator: str = "",
    value_range: tuple[float, float] | None = (-1.0, 1.0),
    annotation_name: str | None = None,
) -> AlignedSong:
    """`dsaml.examples.align` for an annotation read by `read_annotations`; errors name the annotation file."""
    try:
        return align(
            patches, arousal=annotation["arousal"], valence=annotation["valence"],
            start_seconds=annotation["start_seconds"], frame_rate=1.0 / step_seconds, step_seconds=step_seconds,
            song_id=song_id, annotator=annotator, value_range=value_range,
        )
    except AnnotationError as exc:
        if annotation_name:
            raise AnnotationError(f"{annotation_name}: {exc}") from exc
        raise


# ---------------------------------------------------------------------------------------------------------------
# personalization


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


def _support_loss(model: nn.Module, batch: Mapping[str, torch.Tensor], params: Mapping[str, torch.Tensor],
                  seed: int) -> float:
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
) -> Personalization:
    """Adapt `model` to one listener from aligned support song(s). `model` is not modified.

    The support song is cut into `config.window_steps` windows, batched, and `steps` SGD steps of size `lr`
    (default: the config's meta-training values) are taken on the config's `adapted_parameters`, in train mode
    under `torch.manual_seed(seed)`.
    """
    config = model.config
    steps = config.adaptation_steps if steps is None else int(steps)
    lr = config.adaptation_lr if lr is None else float(lr)
    songs = [support] if isinstance(support, AlignedSong) else list(support)
    batch = support_batch(songs, config.window_steps)  # every window of the support song, as in evaluation
    params = adaptable_parameters(model)
    before = _support_loss(model, batch, params, seed)
    # the inner loop of meta-training (train mode, seeded dropout) on a copy: `dsaml.episodes.personalized_copy`
    with torch.enable_grad():
        adapted = personalized_copy(model, batch, steps=steps, lr=lr, seed=seed)
    adapted_params = dict(adapted.named_parameters())
    fast = {n: adapted_params[n].detach().clone() for n in params}
    after = _support_loss(model, batch, fast, seed)
    info = {
        "user": user, "steps": steps, "lr": lr, "seed": seed, "support_songs": [s.song_id for s in songs],
        "support_steps": int(sum(s.num_steps for s in songs)), "adapted_parameters": list(config.adapted_parameters),
        "support_loss_before": before, "support_loss_after": after, "mode": "train (dropout), fixed seed",
    }
    if after > before:
        logger.warning("personalizing user %r on %s made the fit to the support song worse (loss %.4f -> %.4f): "
                       "the inner learning rate (%g) or step count (%d) is too large for this song; try a smaller "
                       "lr or fewer steps", user, ", ".join(info["support_songs"]), before, after, lr, steps)
    return Personalization(adapted, fast, user, steps, lr, seed, before, after, info)


def personalize(
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
        patches = song_patches(extractor, wave, rate, name=str(audio))
    except ValueError as exc:
        raise AudioError(str(exc)) from exc
    song = align_annotations(patches, annotations, step_seconds=config.step_seconds, song_id=Path(audio).stem,
                             annotator=user, value_range=value_range,
                             annotation_name=name or "annotation")
    if config.global_encoder == "pretrained":  # global_input_values: the song at the model rate (as SongStore)
        from dsaml.examples import AlignedSong as _Aligned
        from dsaml.modeling.step_audio_dsaml import step_samples

        full = extractor.prepare_waveform(wave, rate, name=str(audio))
        song = _Aligned(song.song_id, song.annotator, song.features, song.labels, song.start_step,
                        step_samples(full, song.start_step, song.start_step + song.num_steps, extractor.samples_per_step))
    result = personalize_song(model, song, user=user, steps=steps, lr=lr, seed=seed)
    result.info.update({"audio": str(audio), "annotations": name})
    return result


# ---------------------------------------------------------------------------------------------------------------
# saving: full weights and LoRA adapters


def base_fingerprint(model: nn.Module) -> str:
    """sha256 over the names, shapes and bytes of the (base) model's state dict: identifies the exact weights.

    A PEFT-wrapped model is fingerprinted on its base weights (LoRA tensors excluded)."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        model = model.get_base_model()
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if "lora_" in name or ".modules_to_save." in name:  # the adapters' own tensors
            continue
        name = name.replace(".base_layer.", ".").replace(".original_module.", ".")
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def save_full(result: Personalization, output_dir: str | os.PathLike, extractor: DSAMLFeatureExtractor | None = None,
              base: nn.Module | None = None) -> Path:
    """Save the whole adapted model (+ feature extractor) with `save_pretrained`, plus what was done."""
    out = Path(output_dir)
    result.model.save_pretrained(out)
    if extractor is not None:
        extractor.save_pretrained(out)
    make_readable(out)
    info = dict(result.info, mode="full")
    if base is not None:
        info["base_fingerprint"] = base_fingerprint(base)
    (out / PERSONALIZATION_INFO).write_text(json.dumps(info, indent=2, default=str), encoding="utf-8")
    return out


def _linear_targets(model: nn.Module, fast: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the nn.Linear modules whose weight or bias the inner loop adapted."""
    names = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and (f"{name}.weight" in fast or f"{name}.bias" in fast):
            names.append(name)
    return names


def lora_adapter(base: DSAMLForDynamicEmotionRecognition, result: Personalization, *, rank: int = 4,
                 full_modules: Sequence[str] = DEFAULT_FULL_MODULES, base_name_or_path: str | None = None):
    """A PEFT model (deep copy of `base`) holding `result` as a LoRA adapter named after the user.

    Every adapted `nn.Linear` gets `lora_B @ lora_A` = the rank-`rank` truncated SVD of `W' - W` (scaling 1)
    and its bias change in the LoRA bias; exact when `rank >= rank(W' - W)`. Modules matching `full_modules`
    (names, prefixes or globs, e.g. `"*norm*"`, `"predictor.lstm"`, `"*"`) whose parameters or buffers changed
    and that are not `nn.Linear` are stored whole, as PEFT `modules_to_save` (this is how the LSTM, the norms
    and the convolutions can travel in the adapter). Returns `(peft_model, report)`: per LoRA module the relative Frobenius error of the truncation,
    the modules stored whole, and the adapted parameters the adapter does NOT carry."""
    from peft import LoraConfig, get_peft_model

    from dsaml.adaptation import matches

    if rank < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {rank}")
    base_params = dict(base.named_parameters())
    targets = _linear_targets(base, result.fast_weights)
    if not targets:
        raise AdapterError("the inner loop adapted no nn.Linear layer; a LoRA adapter cannot store this "
                           "personalization (use --mode full)")
    base_state = base.state_dict()
    adapted_state = result.model.state_dict()
    whole = []
    if full_modules:
        for name, module in base.named_modules():
            if not name or isinstance(module, nn.Linear) or list(module.children()):
                continue
            local = [f"{name}.{k}" for k in module.state_dict()]
            changed = any(not torch.equal(base_state[k], adapted_state[k]) for k in local if k in adapted_state)
            if local and changed and matches(name, list(full_modules)):
                whole.append(name)
    lora_config = LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, target_modules=targets, lora_bias=True,
                             init_lora_weights=True, bias="none", modules_to_save=whole or None)
    lora_config.base_model_name_or_path = base_name_or_path or getattr(base, "name_or_path", None) or None
    peft_model = get_peft_model(copy.deepcopy(base), lora_config, adapter_name=result.user)
    report: dict[str, float] = {}
    with torch.no_grad():
        modules = dict(peft_model.base_model.model.named_modules())
        for name in targets:
            layer = modules[name]
            a = layer.lora_A[result.user]
            b = layer.lora_B[result.user]
            w_name, b_name = f"{name}.weight", f"{name}.bias"
            delta = (result.fast_weights[w_name] - base_params[w_name]).double() if w_name in result.fast_weights \
                else torch.zeros_like(base_params[w_name], dtype=torch.float64)
            u, s, vh = torch.linalg.svd(delta, full_matrices=False)
            k = min(rank, s.numel())
            b.weight.zero_()
            a.weight.zero_()
            b.weight[:, :k] = (u[:, :k] * s[:k]).to(b.weight.dtype)
            a.weight[:k] = vh[:k].to(a.weight.dtype)
            total = float(s.pow(2).sum().sqrt())
            report[name] = float(s[k:].pow(2).sum().sqrt()) / total if total > 0 else 0.0
            if b.bias is not None:
                if b_name in result.fast_weights:
                    b.bias.copy_(result.fast_weights[b_name] - base_params[b_name])
                else:
                    b.bias.zero_()
        for name in whole:
            copy_ = modules[name].modules_to_save[result.user]
            for key, tensor in copy_.state_dict(keep_vars=True).items():
                tensor.data.copy_(adapted_state[f"{name}.{key}"])
    stored = {f"{t}.weight" for t in targets} | {f"{t}.bias" for t in targets}
    not_stored = sorted(n for n in result.fast_weights
                        if n not in stored and not any(n.startswith(w + ".") for w in whole)
                        and not torch.equal(result.fast_weights[n], base_params[n]))
    peft_model.eval()
    return peft_model, {"relative_truncation_error": report, "modules": len(targets), "stored_whole": whole,
                        "not_stored": not_stored}


def save_lora(base: DSAMLForDynamicEmotionRecognition, result: Personalization, adapters_dir: str | os.PathLike, *,
              rank: int = 4, full_modules: Sequence[str] = DEFAULT_FULL_MODULES, base_name_or_path: str | None = None) -> Path:
    """Save `result` as a PEFT LoRA adapter in `<adapters_dir>/<user>/` (adapter_config.json,
    adapter_model.safetensors, dsaml_adapter.json). Returns the user's adapter folder."""
    peft_model, report = lora_adapter(base, result, rank=rank, full_modules=full_modules,
                                      base_name_or_path=base_name_or_path)
    root = Path(adapters_dir)
    import warnings

    with warnings.catch_warnings():
        # peft takes the 1-D LoRA bias (lora_bias=True) for an un-gathered ZeRO-3 shard; it is complete
        warnings.filterwarnings("ignore", message=".*LoRA tensor.*invalid shape.*")
        peft_model.save_pretrained(root, selected_adapters=[result.user])
    folder = root / result.user
    if not (folder / "adapter_config.json").is_file():  # peft writes a named adapter to a subfolder
        raise AdapterError(f"peft did not write the adapter to {folder}")
    make_readable(folder)
    info = dict(result.info, mode="lora", rank=rank, base_fingerprint=base_fingerprint(base),
                lora_modules=report["modules"], stored_whole=report["stored_whole"],
                relative_truncation_error=report["relative_truncation_error"],
                adapted_but_not_stored=report["not_stored"])
    (folder / ADAPTER_INFO).write_text(json.dumps(info, indent=2, default=str), encoding="utf-8")
    return folder


# ---------------------------------------------------------------------------------------------------------------
# loading


def known_users(adapters_dir: str | os.PathLike) -> list[str]:
    """Users with an adapter in `adapters_dir` (subfolders holding adapter_config.json)."""
    root = Path(adapters_dir)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "adapter_config.json").is_file())


def _local(adapters_dir: str | os.PathLike) -> Path:
    """A local adapter folder, or a Hub repo id (`owner/name`) downloaded with `snapshot_download`."""
    path = Path(adapters_dir)
    text = str(adapters_dir)
    if path.exists() or text.count("/") != 1 or text.startswith((".", "/")):
        return path
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo_id=text, repo_type="model"))


def push_adapters(adapters_dir: str | os.PathLike, repo_id: str, *, private: bool = False,
                  commit_message: str = "Upload dsaml per-user LoRA adapters") -> str:
    """Upload a folder of per-user adapters (or one user's adapter folder) to a Hub model repo, with the
    `dsaml_adapter.json` base fingerprints. `load_personalized(base, repo_id, user)` reads it back.
    (`PeftModel.push_to_hub` works too, but uploads the PEFT files only.)"""
    from huggingface_hub import HfApi

    folder = Path(adapters_dir)
    if not (folder / "adapter_config.json").is_file() and not known_users(folder):
        raise AdapterError(f"{folder}: no adapter to push (no adapter_config.json in it or its subfolders)")
    api = HfApi()
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                             commit_message=commit_message, ignore_patterns=[".*", "**/.*"])
    return str(getattr(info, "commit_url", info))


def _adapter_folder(adapters_dir: str | os.PathLike, user: str | None) -> tuple[Path, str]:
    root = _local(adapters_dir)
    if not root.exists():
        raise AdapterError(f"{root}: adapter folder not found" + (f" (looking for user {user!r})" if user else ""))
    if (root / "adapter_config.json").is_file():  # one adapter folder given directly
        return root, user or root.name
    users = known_users(root)
    if user is None:
        if len(users) == 1:
            return root / users[0], users[0]
        raise UnknownUserError(f"{root}: several users' adapters ({', '.join(users) or 'none'}); choose one with --user")
    if user not in users:
        raise UnknownUserError(
            f"unknown user {user!r}: no adapter in {root}; known users: {', '.join(users) or '(none)'}"
        )
    return root / user, user


def check_adapter(model: nn.Module, folder: str | os.PathLike, user: str | None = None) -> None:
    """Raise `AdapterError` if the adapter in `folder` was made for other base weights."""
    info_path = Path(folder) / ADAPTER_INFO
    if not info_path.is_file():
        return  # a plain PEFT adapter (e.g. pulled from the Hub without our metadata): PEFT checks shapes only
    info = json.loads(info_path.read_text(encoding="utf-8"))
    expected = info.get("base_fingerprint")
    if expected and expected != base_fingerprint(model):
        raise AdapterError(
            f"the adapter of user {user or info.get('user')!r} in {folder} was made for another base model "
            f"(base weights fingerprint {expected[:12]}..., this model's is {base_fingerprint(model)[:12]}...); "
            "personalize again with this model"
        )


def add_user(peft_model, adapters_dir: str | os.PathLike, user: str):
    """Load one more user's adapter onto a PEFT model (checked against its base) without activating it."""
    folder, user = _adapter_folder(adapters_dir, user)
    check_adapter(peft_model, folder, user)
    peft_model.load_adapter(str(folder), adapter_name=user)
    return peft_model


def load_personalized(model_dir: str | os.PathLike, adapter_dir: str | os.PathLike | None = None,
                      user: str | None = None, *, model: nn.Module | None = None):
    """A ready-to-predict model (eval mode): the base from `model_dir` (or the given `model`), with the LoRA
    adapter of `user` from `adapter_dir` (a folder of per-user adapters, or one adapter folder) when given.

    Returns a `DSAMLForDynamicEmotionRecognition` or a `peft.PeftModel` (same forward / `predict_long`).
    Raises `UnknownUserError` (listing the known users) or `AdapterError` (adapter made for another base)."""
    from peft import PeftModel

    if model is None:
        model = DSAMLForDynamicEmotionRecognition.from_pretrained(str(model_dir))
    if adapter_dir is None:
        if user is not None:
            raise UnknownUserError(f"user {user!r} given without an adapter folder (--adapter_dir)")
        return model.eval()
    folder, user = _adapter_folder(adapter_dir, user)
    check_adapter(model, folder, user)
    peft_model = PeftModel.from_pretrained(model, str(folder), adapter_name=user)
    return peft_model.eval()


def load_extractor(model_dir: str | os.PathLike, config: DSAMLConfig) -> DSAMLFeatureExtractor:
    """The feature extractor saved with the model (folder or Hub repo), or the one its config implies."""
    if model_dir is not None:
        try:
            return DSAMLFeatureExtractor.from_pretrained(str(model_dir))
        except (OSError, ValueError):
            pass
    return DSAMLFeatureExtractor.from_model_config(config)


# ---------------------------------------------------------------------------------------------------------------
# CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dsaml personalize",
        description="Adapt a DSAML model to one listener from one annotated song (the meta-learned inner loop).",
    )
    parser.add_argument("--model", required=True, help="model folder (save_pretrained) or Hub repo id")
    parser.add_argument("--audio", required=True, help="the support song (wav/mp3/flac/ogg)")
    parser.add_argument("--annotations", required=True,
                        help="the listener's curve: CSV with time (s), arousal, valence; or a `dsaml predict` JSON")
    parser.add_argument("--user", required=True, help="listener id (names the adapter)")
    parser.add_argument("--output", default=None,
                        help="full: the personalized model folder (default: personalized/<user>); lora: the folder "
                             "of per-user adapters (default: adapters/), the adapter goes to <output>/<user>/")
    parser.add_argument("--mode", choices=("lora", "full"), default="lora")
    parser.add_argument("--rank", type=int, default=4, help="LoRA rank (lora mode)")
    parser.add_argument("--full_modules", nargs="*", default=list(DEFAULT_FULL_MODULES), metavar="PATTERN",
                        help="lora mode: non-Linear modules to store whole in the adapter (PEFT modules_to_save), "
                             "e.g. 'predictor.lstm', or '*' for an exact adapter; give the flag alone for Linear "
                             f"layers only (default: {' '.join(DEFAULT_FULL_MODULES)})")
    parser.add_argument("--steps", type=int, default=None, help="inner steps (default: the model's adaptation_steps)")
    parser.add_argument("--lr", type=float, default=None, help="inner learning rate (default: adaptation_lr)")
    parser.add_argument("--seed", type=int, default=0, help="torch seed of the inner loop (dropout)")
    parser.add_argument("--value_range", type=float, nargs=2, default=(-1.0, 1.0), metavar=("LOW", "HIGH"),
                        help="allowed annotation range")
    return parser


def main(argv: list[str] | None = None) -> int:
    import sys

    args = build_parser().parse_args(argv)
    try:
        model = DSAMLForDynamicEmotionRecognition.from_pretrained(args.model)
        extractor = load_extractor(args.model, model.config)
        result = personalize(model, extractor, args.audio, args.annotations, user=args.user, steps=args.steps,
                             lr=args.lr, seed=args.seed, value_range=tuple(args.value_range))
        if args.mode == "full":
            out = save_full(result, args.output or Path("personalized") / args.user, extractor, base=model)
        else:
            out = save_lora(model, result, args.output or "adapters", rank=args.rank,
                            full_modules=args.full_modules, base_name_or_path=args.model)
    except (AudioError, AnnotationError, AdapterError, UnknownUserError) as exc:
        print(f"dsaml personalize: error: {exc}", file=sys.stderr)
        return 1
    size = sum(p.stat().st_size for p in Path(out).rglob("*") if p.is_file()) / 1024
    print(f"personalized {args.user!r} on {result.info['support_steps']} steps ({result.steps} inner steps, "
          f"lr {result.lr:g}): support loss {result.support_loss_before:.4f} -> {result.support_loss_after:.4f}")
    print(f"saved {args.mode} to {out} ({size:.1f} KB)")
    return 0
