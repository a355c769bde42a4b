"""Personalized models on disk: full model folders and per-user PEFT LoRA adapters, checked against their base.

A LoRA adapter is a standard PEFT adapter in `<adapters_dir>/<user>/` (`adapter_config.json`,
`adapter_model.safetensors`) plus `dsaml_adapter.json`: what was done, and a fingerprint of the base weights, so
an adapter is never silently applied to another base model. PEFT cannot wrap `nn.LSTM`, so the adapter holds
each adapted `nn.Linear` layer's change `W' - W` as its rank-`r` truncated SVD `lora_B @ lora_A` (scaling
`lora_alpha / r = 1`), its bias change in the LoRA bias (`lora_bias=True`), and, whole (PEFT `modules_to_save`),
the non-Linear modules matching `full_modules` that the inner loop changed. The tensors go in through peft's
public API (`get_peft_model`, `set_peft_model_state_dict`), never by writing peft's module internals.

Several users share one base: `load_personalized(model_dir, adapters_dir, user)` loads one user's adapter,
`add_user` another, and `PeftModel.set_adapter` switches between them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from dsaml.adaptation.config import personalization_config
from dsaml.adaptation.tensors import DELAY, matches, named_tensors
from dsaml.errors import AdapterError, UnknownUserError
from dsaml.inference.loading import load_model
from dsaml.modeling import DSAMLFeatureExtractor, DSAMLForDynamicEmotionRecognition
from dsaml.personalization.request import DEFAULT_FULL_MODULES
from dsaml.utils.files import make_readable
from dsaml.utils.hub import upload_folder
from dsaml.utils.storage import check_target, check_user, reading, write_folder

if TYPE_CHECKING:  # pragma: no cover
    from dsaml.personalization.personalize import Personalization

ADAPTER_INFO = "dsaml_adapter.json"
PERSONALIZATION_INFO = "dsaml_personalization.json"
# the prefix of every module in the state dict of a PEFT model (`PeftModel.base_model.model`)
PEFT_PREFIX = "base_model.model."

__all__ = [
    "ADAPTER_INFO",
    "DEFAULT_FULL_MODULES",
    "PERSONALIZATION_INFO",
    "AdapterError",
    "UnknownUserError",
    "add_user",
    "base_fingerprint",
    "check_adapter",
    "known_users",
    "load_extractor",
    "load_model",
    "load_personalized",
    "lora_adapter",
    "push_adapters",
    "save_full",
    "save_lora",
]


def base_fingerprint(model: nn.Module) -> str:
    """sha256 over the names, shapes and bytes of the (base) model's state dict: identifies the exact weights.

    A PEFT-wrapped model is fingerprinted on its base weights (LoRA tensors excluded); a zero reaction lag is
    left out, so adapters made before the lag existed still match their base."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        model = model.get_base_model()
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if "lora_" in name or ".modules_to_save." in name:  # the adapters' own tensors
            continue
        name = name.replace(".base_layer.", ".").replace(".original_module.", ".")
        if name == DELAY and not bool(tensor.any()):
            continue  # a base model's zero lag, which models saved before the lag existed lack: same base
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def save_full(result: Personalization, output_dir: str | os.PathLike, extractor: DSAMLFeatureExtractor | None = None,
              base: nn.Module | None = None, *, overwrite: bool = False) -> Path:
    """Save the whole adapted model (+ feature extractor) with `save_pretrained`, plus what was done; the
    folder appears whole or not at all (`dsaml.utils.storage.write_folder`), replacing one only with `overwrite`."""
    out = Path(output_dir)
    with write_folder(out, overwrite=overwrite, what=f"personalized model of user {result.user!r}") as tmp:
        result.model.save_pretrained(tmp)
        personalization_config(result.model).save_pretrained(tmp)
        if extractor is not None:
            extractor.save_pretrained(tmp)
        make_readable(tmp)
        info = dict(result.info, mode="full")
        if base is not None:
            info["base_fingerprint"] = base_fingerprint(base)
        (tmp / PERSONALIZATION_INFO).write_text(json.dumps(info, indent=2, default=str), encoding="utf-8")
    return out


def _linear_targets(model: nn.Module, fast: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the nn.Linear modules whose weight or bias the inner loop adapted."""
    names = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and (f"{name}.weight" in fast or f"{name}.bias" in fast):
            names.append(name)
    return names


def _changed_modules(base: nn.Module, adapted: nn.Module, patterns: Sequence[str]) -> list[str]:
    """Leaf modules other than `nn.Linear` matching `patterns` whose parameters or buffers the inner loop changed."""
    if not patterns:
        return []
    base_state, adapted_state = base.state_dict(), adapted.state_dict()
    whole = []
    for name, module in base.named_modules():
        if not name or isinstance(module, nn.Linear) or list(module.children()):
            continue
        local = [f"{name}.{k}" for k in module.state_dict()]
        changed = any(not torch.equal(base_state[k], adapted_state[k]) for k in local if k in adapted_state)
        if local and changed and matches(name, list(patterns)):
            whole.append(name)
    return whole


@torch.no_grad()
def _lora_tensors(base: nn.Module, fast: Mapping[str, torch.Tensor], targets: Sequence[str],
                  rank: int) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """The LoRA tensors of each target Linear, keyed as peft saves them, and each truncation's relative error.

    `lora_B @ lora_A` is the rank-`rank` truncated SVD of `W' - W` (scaling 1); the LoRA bias is the bias change."""
    base_params = dict(base.named_parameters())
    tensors: dict[str, torch.Tensor] = {}
    errors: dict[str, float] = {}
    for name in targets:
        weight, w_name, b_name = base_params[f"{name}.weight"], f"{name}.weight", f"{name}.bias"
        delta = (fast[w_name] - weight).double() if w_name in fast else torch.zeros_like(weight, dtype=torch.float64)
        u, s, vh = torch.linalg.svd(delta, full_matrices=False)
        k = min(rank, s.numel())
        a = weight.new_zeros(rank, weight.shape[1])
        b = weight.new_zeros(weight.shape[0], rank)
        b[:, :k] = (u[:, :k] * s[:k]).to(b.dtype)
        a[:k] = vh[:k].to(a.dtype)
        bias = (fast[b_name] - base_params[b_name]).detach() if b_name in fast else weight.new_zeros(weight.shape[0])
        key = PEFT_PREFIX + name
        tensors.update({f"{key}.lora_A.weight": a, f"{key}.lora_B.weight": b, f"{key}.lora_B.bias": bias})
        total = float(s.pow(2).sum().sqrt())
        errors[name] = float(s[k:].pow(2).sum().sqrt()) / total if total > 0 else 0.0
    return tensors, errors


def lora_adapter(base: DSAMLForDynamicEmotionRecognition, result: Personalization, *, rank: int = 4,
                 full_modules: Sequence[str] = DEFAULT_FULL_MODULES, base_name_or_path: str | None = None):
    """A PEFT model (deep copy of `base`) holding `result` as a LoRA adapter named after the user.

    Every adapted `nn.Linear` gets `lora_B @ lora_A` = the rank-`rank` truncated SVD of `W' - W` (scaling 1)
    and its bias change in the LoRA bias; exact when `rank >= rank(W' - W)`. Modules matching `full_modules`
    (names, prefixes or globs, e.g. `"*norm*"`, `"predictor.lstm"`, `"*"`) whose parameters or buffers changed
    and that are not `nn.Linear` are stored whole, as PEFT `modules_to_save` (this is how the LSTM, the norms
    and the convolutions can travel in the adapter). Returns `(peft_model, report)`: per LoRA module the
    relative Frobenius error of the truncation, the modules stored whole, and the adapted parameters the
    adapter does NOT carry."""
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

    if rank < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {rank}")
    fast = result.fast_weights
    targets = _linear_targets(base, fast)
    if not targets:
        raise AdapterError("the inner loop adapted no nn.Linear layer; a LoRA adapter cannot store this "
                           "personalization (use --mode full)")
    # the reaction lag (`predictor.delay`) travels with every adapter that has one, whatever `full_modules` says
    whole = _changed_modules(base, result.model, [*full_modules, "predictor.delay"])
    lora_config = LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, target_modules=targets, lora_bias=True,
                             init_lora_weights=True, bias="none", modules_to_save=whole or None)
    lora_config.base_model_name_or_path = base_name_or_path or getattr(base, "name_or_path", None) or None
    peft_model = get_peft_model(copy.deepcopy(base), lora_config, adapter_name=result.user)
    tensors, errors = _lora_tensors(base, fast, targets, rank)
    adapted_state = result.model.state_dict()
    for name in whole:
        prefix = f"{name}."
        tensors.update({PEFT_PREFIX + k: v for k, v in adapted_state.items() if k.startswith(prefix)})
    loaded = set_peft_model_state_dict(peft_model, tensors, adapter_name=result.user)
    if loaded.unexpected_keys:  # a peft upgrade that names its tensors differently must fail loudly
        raise AdapterError(f"peft did not take the adapter tensors {loaded.unexpected_keys[:5]}")
    base_params = named_tensors(base)
    stored = {f"{t}.weight" for t in targets} | {f"{t}.bias" for t in targets}
    not_stored = sorted(n for n in fast
                        if n not in stored and not any(n.startswith(w + ".") for w in whole)
                        and not torch.equal(fast[n], base_params[n]))
    peft_model.eval()
    return peft_model, {"relative_truncation_error": errors, "modules": len(targets), "stored_whole": whole,
                        "not_stored": not_stored}


def save_lora(base: DSAMLForDynamicEmotionRecognition, result: Personalization, adapters_dir: str | os.PathLike, *,
              rank: int = 4, full_modules: Sequence[str] = DEFAULT_FULL_MODULES, base_name_or_path: str | None = None,
              overwrite: bool = False) -> Path:
    """Save `result` as a PEFT LoRA adapter in `<adapters_dir>/<user>/` (adapter_config.json,
    adapter_model.safetensors, dsaml_adapter.json). The folder appears whole or not at all
    (`dsaml.utils.storage.write_folder`); an existing user is replaced only with `overwrite`. Returns the folder."""
    folder = Path(adapters_dir) / check_user(result.user)
    check_target(folder, overwrite=overwrite, what=f"adapter of user {result.user!r}")
    peft_model, report = lora_adapter(base, result, rank=rank, full_modules=full_modules,
                                      base_name_or_path=base_name_or_path)
    with write_folder(folder, overwrite=overwrite, what=f"adapter of user {result.user!r}") as tmp:
        with warnings.catch_warnings():
            # peft takes the 1-D LoRA bias (lora_bias=True) for an un-gathered ZeRO-3 shard; it is complete
            warnings.filterwarnings("ignore", message=".*LoRA tensor.*invalid shape.*")
            peft_model.save_pretrained(tmp, selected_adapters=[result.user])
        written = tmp / result.user  # peft writes a named adapter to a subfolder: lift it into place
        for path in list(written.iterdir()) if written.is_dir() else []:
            os.replace(path, tmp / path.name)
        if written.is_dir():
            written.rmdir()
        if not (tmp / "adapter_config.json").is_file():
            raise AdapterError(f"peft did not write the adapter of user {result.user!r} (no adapter_config.json)")
        make_readable(tmp)
        info = dict(result.info, mode="lora", rank=rank, base_fingerprint=base_fingerprint(base),
                    lora_modules=report["modules"], stored_whole=report["stored_whole"],
                    relative_truncation_error=report["relative_truncation_error"],
                    adapted_but_not_stored=report["not_stored"])
        (tmp / ADAPTER_INFO).write_text(json.dumps(info, indent=2, default=str), encoding="utf-8")
    return folder


# ---------------------------------------------------------------------------------------------------------------
# loading


def known_users(adapters_dir: str | os.PathLike) -> list[str]:
    """Users with an adapter in `adapters_dir` (subfolders holding adapter_config.json)."""
    root = Path(adapters_dir)
    if not root.is_dir():
        return []
    # hidden names are the temporary folders of writes in progress (`dsaml.utils.storage.write_folder`)
    return sorted(p.name for p in root.iterdir()
                  if not p.name.startswith(".") and (p / "adapter_config.json").is_file())


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
    folder = Path(adapters_dir)
    if not (folder / "adapter_config.json").is_file() and not known_users(folder):
        raise AdapterError(f"{folder}: no adapter to push (no adapter_config.json in it or its subfolders)")
    return str(upload_folder(folder, repo_id, private=private, commit_message=commit_message).commit_url)


def _adapter_folder(adapters_dir: str | os.PathLike, user: str | None) -> tuple[Path, str]:
    root = _local(adapters_dir)
    if not root.exists():
        raise AdapterError(f"{root}: adapter folder not found" + (f" (looking for user {user!r})" if user else ""))
    if (root / "adapter_config.json").is_file():  # one adapter folder given directly
        return root, user or root.name
    if user is not None:
        check_user(user)
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


def check_adapter(model: nn.Module, folder: str | os.PathLike, user: str | None = None, *,
                  allow_unverified: bool = False) -> None:
    """Raise `AdapterError` if the adapter in `folder` was made for other base weights, or if its base cannot be
    verified (no or unreadable `dsaml_adapter.json`, no fingerprint in it, e.g. an adapter published with
    `PeftModel.push_to_hub`) unless `allow_unverified`."""
    info_path = Path(folder) / ADAPTER_INFO
    who = f"the adapter of user {user!r} in {folder}" if user else f"the adapter in {folder}"
    try:
        info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise AdapterError(f"{info_path}: unreadable ({exc}); personalize again, or remove the file and pass "
                           "--allow_unverified_adapter to use the adapter unchecked") from None
    expected = info.get("base_fingerprint") if isinstance(info, dict) else None
    if not expected:
        if allow_unverified:
            return
        raise AdapterError(f"{who} has no base-model fingerprint ({ADAPTER_INFO}), so it cannot be checked against "
                           "this model; pass --allow_unverified_adapter (allow_unverified=True) to use it anyway")
    if expected != base_fingerprint(model):
        raise AdapterError(
            f"{who} was made for another base model "
            f"(base weights fingerprint {str(expected)[:12]}..., this model's is {base_fingerprint(model)[:12]}...); "
            "personalize again with this model"
        )
    made_with = info.get("adaptation_share")
    share = personalization_config(model).share
    if made_with is not None and [float(a) for a in made_with] != [float(a) for a in share]:
        warnings.warn(f"{who} was made when the model kept {made_with} (arousal, valence) of the adapted change; the "
                      f"model now keeps {list(share)} (recalibrated): the adapter keeps what "
                      "it was made with; personalize again to use the model's share", stacklevel=2)


def add_user(peft_model, adapters_dir: str | os.PathLike, user: str, *, allow_unverified: bool = False):
    """Load one more user's adapter onto a PEFT model (checked against its base) without activating it."""
    folder, user = _adapter_folder(adapters_dir, user)
    with reading(folder):
        check_adapter(peft_model, folder, user, allow_unverified=allow_unverified)
        peft_model.load_adapter(str(folder), adapter_name=user)
    return peft_model


def load_personalized(model_dir: str | os.PathLike, adapter_dir: str | os.PathLike | None = None,
                      user: str | None = None, *, model: nn.Module | None = None, allow_unverified: bool = False):
    """A ready-to-predict model (eval mode): the base from `model_dir` (or the given `model`), with the LoRA
    adapter of `user` from `adapter_dir` (a folder of per-user adapters, or one adapter folder) when given.

    Returns a `DSAMLForDynamicEmotionRecognition` or a `peft.PeftModel` (same forward / `predict_long`).
    Raises `UnknownUserError` (listing the known users) or `AdapterError` (adapter made for another base, or
    whose base cannot be verified unless `allow_unverified`)."""
    from peft import PeftModel

    if model is None:
        model = load_model(model_dir)
    if adapter_dir is None:
        if user is not None:
            raise UnknownUserError(f"user {user!r} given without an adapter folder (--adapter_dir)")
        return model.eval()
    folder, user = _adapter_folder(adapter_dir, user)
    with reading(folder):
        check_adapter(model, folder, user, allow_unverified=allow_unverified)
        peft_model = PeftModel.from_pretrained(model, str(folder), adapter_name=user)
    return peft_model.eval()
