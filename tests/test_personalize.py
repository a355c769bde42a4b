"""Personalization: the inner loop on one song, full and LoRA storage, several users on one base, clear errors."""

from __future__ import annotations

import copy
import dataclasses
import json
import os

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from conftest import small_config, tone, with_recipe
from torch import nn

from dsaml import DSAMLFeatureExtractor, DSAMLForDynamicEmotionRecognition
from dsaml.adaptation.config import READ_OUT_TENSORS as READ_OUT
from dsaml.adaptation.config import PersonalizationConfig
from dsaml.commands.personalize import main
from dsaml.data.alignment import align, song_patches
from dsaml.data.annotation_files import read_annotations
from dsaml.errors import AdapterError, AnnotationError, UnknownUserError
from dsaml.personalization.adapters import (
    ADAPTER_INFO,
    add_user,
    known_users,
    load_personalized,
    lora_adapter,
    save_full,
    save_lora,
)
from dsaml.personalization.personalize import personalize_audio, personalize_song

SR = 22050
SECONDS = 6.0  # 12 steps = one window
WINDOW = 12


def _linear_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]


RECIPE = {f.name for f in dataclasses.fields(PersonalizationConfig)}


def _model(seed: int = 0, **overrides) -> DSAMLForDynamicEmotionRecognition:
    """A small model with the recipe of `overrides`' personalization settings (4 SGD steps at 0.05 by default)."""
    torch.manual_seed(seed)
    config = small_config(window_steps=WINDOW, inference_hop_steps=6,
                          **{k: v for k, v in overrides.items() if k not in RECIPE})
    recipe = {"steps": 4, "learning_rate": 0.05, **{k: v for k, v in overrides.items() if k in RECIPE}}
    return with_recipe(DSAMLForDynamicEmotionRecognition(config).eval(), **recipe)


def _curve(steps: int, phase: float) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(steps)
    return (0.5 * np.sin(t / 3 + phase)).astype(np.float32), (0.4 * np.cos(t / 4 + phase) - 0.2).astype(np.float32)


def _write_song(folder, name: str, seconds: float = SECONDS, freq: float = 440.0, start: float = 0.0,
                annotated: float | None = None, phase: float = 0.0):
    audio = folder / f"{name}.wav"
    sf.write(audio, tone(seconds, SR, freq), SR)
    steps = int(round(((annotated or seconds) - start) / 0.5))
    arousal, valence = _curve(steps, phase)
    csv = folder / f"{name}.csv"
    pd.DataFrame({"time": start + 0.5 * np.arange(steps), "arousal": arousal, "valence": valence}).to_csv(
        csv, index=False)
    return audio, csv


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("songs")
    return {
        "alice": _write_song(folder, "alice_song", freq=330.0, phase=0.0),
        "bob": _write_song(folder, "bob_song", freq=550.0, phase=2.0),
        "other": _write_song(folder, "other_song", seconds=9.0, freq=440.0),
    }


@pytest.fixture(scope="module")
def base():
    return _model()


@pytest.fixture(scope="module")
def extractor(base):
    return DSAMLFeatureExtractor.from_model_config(base.config)


@pytest.fixture(scope="module")
def alice(base, extractor, songs):
    return personalize_audio(base, extractor, *songs["alice"], user="alice")


def _features(extractor, path):
    wave, rate = sf.read(path, dtype="float32")
    return extractor(wave, sampling_rate=rate)


def _predict(model, inputs):
    with torch.no_grad():
        return model.predict_long(inputs["input_features"], inputs["attention_mask"])


def test_personalization_lowers_support_loss_and_changes_only_adapted(base, extractor, songs):
    before_state = {k: v.clone() for k, v in base.state_dict().items()}
    linear = _linear_names(base)
    patterns = [f"{n}.weight" for n in linear] + [f"{n}.bias" for n in linear]
    restricted = _model(adapted_parameters=patterns)
    result = personalize_audio(restricted, extractor, *songs["alice"], user="alice")
    assert result.support_loss_after < result.support_loss_before - 1e-3
    changed = {n for n, p in result.model.named_parameters()
               if not torch.equal(p, dict(restricted.named_parameters())[n])}
    assert changed, "personalization changed nothing"
    assert changed <= set(patterns)
    assert any(n.startswith("predictor.out") for n in changed)
    # the base model itself is untouched (functional inner loop on a copy)
    full = personalize_audio(base, extractor, *songs["alice"], user="alice")
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in before_state.items())
    assert full.support_loss_after < full.support_loss_before
    # reproducible: the same inputs give the same personalized weights (seeded dropout)
    again = personalize_audio(base, extractor, *songs["alice"], user="alice")
    assert all(torch.equal(again.fast_weights[n], full.fast_weights[n]) for n in full.fast_weights)


def test_a_share_of_the_read_out_change_is_exactly_the_blend_of_the_curves_per_dimension(extractor, songs):
    from dsaml.personalization.shrinkage import fold_per_dimension, shrink

    read_out = _model(adapted_parameters=["predictor.dense", "predictor.out"])
    base_params = dict(read_out.named_parameters())
    plain = personalize_audio(read_out, extractor, *songs["alice"], user="alice")
    assert plain.info["shrinkage"] == [1.0, 1.0]
    inputs = _features(extractor, songs["other"][0])
    folded = copy.deepcopy(read_out)
    with torch.no_grad():
        for name, value in fold_per_dimension(base_params, plain.fast_weights, (0.25, 0.75)).items():
            dict(folded.named_parameters())[name].copy_(value)
    before, after = _predict(read_out, inputs), _predict(plain.model, inputs)
    expected = before + torch.tensor([0.25, 0.75]) * (after - before)
    torch.testing.assert_close(_predict(folded, inputs), expected, rtol=0, atol=1e-5)
    assert not torch.allclose(expected[..., 0], after[..., 0], atol=1e-4)

    # the recipe's share, applied by personalization itself
    halved = _model(adapted_parameters=["predictor.dense", "predictor.out"], share=[0.25, 0.75])
    shared = personalize_audio(halved, extractor, *songs["alice"], user="alice")
    assert shared.info["shrinkage"] == [0.25, 0.75]
    torch.testing.assert_close(_predict(shared.model, inputs), expected, rtol=0, atol=1e-5)

    # every weight adapted: one share for all of them, never one per dimension
    wide = _model()
    everything = personalize_audio(wide, extractor, *songs["alice"], user="alice")
    with pytest.raises(ValueError, match="need an inner loop that adapts only the predictor's linear read-out"):
        shrink(wide, everything.fast_weights, (0.25, 0.75))
    half = shrink(wide, everything.fast_weights, (0.5, 0.5))
    base_wide = dict(wide.named_parameters())
    name = next(iter(half))
    torch.testing.assert_close(half[name], base_wide[name] + 0.5 * (everything.fast_weights[name] - base_wide[name]))


@pytest.mark.parametrize("cues,adapted", [(False, READ_OUT), (True, READ_OUT), (True, READ_OUT[2:])])
def test_folding_per_dimension_shares_is_exact(cues, adapted):
    from dsaml.personalization.shrinkage import fold_per_dimension

    torch.manual_seed(1)
    model = _model(harmonic_features=cues, readout_cues=cues)
    base = {n: p.detach().clone() for n, p in model.named_parameters() if n in adapted}
    fast = {n: v + 0.3 * torch.randn_like(v) for n, v in base.items()}
    hidden, harmonic = torch.randn(2, 9, model.config.hidden_size), torch.rand(2, 9, 38)

    def head(params):
        local = {n[len("predictor."):]: v for n, v in params.items()}
        return torch.func.functional_call(model.predictor, local, (hidden, None, harmonic if cues else None))

    alpha = torch.tensor([0.75, 0.25])
    with torch.no_grad():
        expected = head(base) + alpha * (head(fast) - head(base))
        folded = fold_per_dimension(base, fast, (0.75, 0.25))
        assert set(folded) <= set(READ_OUT)
        torch.testing.assert_close(head({**base, **folded}), expected, rtol=0, atol=1e-5)


def test_a_step_that_worsens_the_support_fit_is_reported(base, extractor, songs, caplog):
    with caplog.at_level("WARNING", logger="dsaml.personalization.personalize"):
        result = personalize_audio(base, extractor, *songs["alice"], user="alice", lr=50.0)
    assert result.support_loss_after > result.support_loss_before
    assert "personalizing user 'alice'" in caplog.text and "made the fit to the support song worse" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="dsaml.personalization.personalize"):
        personalize_audio(base, extractor, *songs["alice"], user="alice")
    assert "worse" not in caplog.text


def test_full_mode_round_trip_is_bit_identical(tmp_path, base, extractor, songs, alice):
    out = save_full(alice, tmp_path / "alice_full", extractor, base=base)
    loaded = DSAMLForDynamicEmotionRecognition.from_pretrained(str(out)).eval()
    inputs = _features(extractor, songs["other"][0])
    assert torch.equal(_predict(loaded, inputs), _predict(alice.model, inputs))
    assert not torch.equal(_predict(loaded, inputs), _predict(base, inputs))
    info = json.loads((out / "dsaml_personalization.json").read_text())
    assert info["user"] == "alice" and info["steps"] == 4


def test_lora_round_trip_matches_in_memory_adapter(tmp_path, base, extractor, songs, alice):
    folder = save_lora(base, alice, tmp_path / "adapters", rank=4, full_modules=["predictor.lstm"])
    assert folder == tmp_path / "adapters" / "alice"
    assert (folder / "adapter_config.json").is_file() and (folder / "adapter_model.safetensors").is_file()
    umask = os.umask(0)
    os.umask(umask)
    assert (folder / "adapter_model.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask  # readable by others
    size_kb = (folder / "adapter_model.safetensors").stat().st_size / 1024
    weights_kb = sum(p.numel() for p in base.parameters()) * 4 / 1024
    assert size_kb < weights_kb / 4
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["lora_alpha"] == 4 and config["peft_type"] == "LORA"
    in_memory, report = lora_adapter(base, alice, rank=4, full_modules=["predictor.lstm"])
    assert report["stored_whole"] == ["predictor.lstm"]
    assert json.loads((folder / ADAPTER_INFO).read_text())["stored_whole"] == ["predictor.lstm"]
    loaded = load_personalized(None, tmp_path / "adapters", "alice", model=_model())
    inputs = _features(extractor, songs["other"][0])
    torch.testing.assert_close(_predict(loaded, inputs), _predict(in_memory, inputs), rtol=0, atol=1e-6)


def test_lora_error_shrinks_with_rank_and_is_exact_at_full_rank(base, extractor, songs):
    # adapting only Linear layers makes the LoRA adapter exact once rank >= rank(W' - W)
    linear = _linear_names(base)
    model = _model(adapted_parameters=[f"{n}.weight" for n in linear] + [f"{n}.bias" for n in linear])
    result = personalize_audio(model, extractor, *songs["alice"], user="alice")
    inputs = _features(extractor, songs["other"][0])
    full = _predict(result.model, inputs)
    shift = (full - _predict(model, inputs)).abs().max().item()
    errors = {}
    for rank in (1, 4, 128):
        peft_model, report = lora_adapter(model, result, rank=rank)
        errors[rank] = (_predict(peft_model, inputs) - full).abs().max().item()
        assert report["not_stored"] == []
    assert shift > 1e-3
    assert errors[1] > errors[128]
    assert errors[128] < 1e-5 * max(1.0, shift) + 1e-6  # float32 rounding only: W x + (B A) x vs (W + dW) x
    # with all parameters adapted, the non-Linear changes are reported as not stored ...
    everything = personalize_audio(base, extractor, *songs["alice"], user="alice")
    partial, report = lora_adapter(base, everything, rank=128, full_modules=())
    assert any("lstm" in name for name in report["not_stored"])
    # ... unless stored whole (PEFT modules_to_save): then the adapter is exact
    exact, report = lora_adapter(base, everything, rank=128, full_modules=["*"])
    assert report["not_stored"] == [] and "predictor.lstm" in report["stored_whole"]
    target = _predict(everything.model, inputs)
    assert (_predict(partial, inputs) - target).abs().max() > 10 * (_predict(exact, inputs) - target).abs().max()
    torch.testing.assert_close(_predict(exact, inputs), target, rtol=0, atol=1e-5)


def test_two_users_on_one_base_and_set_adapter(tmp_path, base, extractor, songs, alice):
    bob = personalize_audio(base, extractor, *songs["bob"], user="bob")
    save_lora(base, alice, tmp_path / "adapters", rank=8)
    save_lora(base, bob, tmp_path / "adapters", rank=8)
    assert known_users(tmp_path / "adapters") == ["alice", "bob"]
    inputs = _features(extractor, songs["other"][0])
    model = load_personalized(None, tmp_path / "adapters", "alice", model=_model())
    add_user(model, tmp_path / "adapters", "bob")
    alice_pred = _predict(model, inputs)
    model.set_adapter("bob")
    bob_pred = _predict(model, inputs)
    assert (alice_pred - bob_pred).abs().max() > 1e-4
    only_bob = load_personalized(None, tmp_path / "adapters", "bob", model=_model())
    torch.testing.assert_close(bob_pred, _predict(only_bob, inputs), rtol=0, atol=1e-6)
    model.set_adapter("alice")
    torch.testing.assert_close(_predict(model, inputs), alice_pred, rtol=0, atol=0)


def test_unknown_user_and_other_base_raise(tmp_path, base, alice):
    save_lora(base, alice, tmp_path / "adapters", rank=4)
    with pytest.raises(UnknownUserError, match=r"unknown user 'carol'.*known users: alice"):
        load_personalized(None, tmp_path / "adapters", "carol", model=_model())
    with pytest.raises(AdapterError, match="made for another base model"):
        load_personalized(None, tmp_path / "adapters", "alice", model=_model(seed=1))
    info = json.loads((tmp_path / "adapters" / "alice" / ADAPTER_INFO).read_text())
    assert len(info["base_fingerprint"]) == 64 and info["adaptation_share"] == [1.0, 1.0]
    # the same weights recalibrated: the adapter still loads (it keeps what it was made with), with a warning
    recalibrated = _model(share=[0.5, 0.5])
    with pytest.warns(UserWarning, match=r"made when the model kept \[1.0, 1.0\].*now keeps \[0.5, 0.5\]"):
        load_personalized(None, tmp_path / "adapters", "alice", model=recalibrated)


def test_annotation_errors_name_the_file(tmp_path, base, extractor):
    # a curve running 3 s past the end of the audio
    audio, csv = _write_song(tmp_path, "short", seconds=6.0, annotated=9.0)
    with pytest.raises(AnnotationError, match=r"short\.csv.*needs 9\.0 s of audio but the audio has 6\.0 s"):
        personalize_audio(base, extractor, audio, csv, user="u")
    # irregular time grid
    bad = tmp_path / "irregular.csv"
    pd.DataFrame({"time": [0.0, 0.5, 1.5], "arousal": [0.1] * 3, "valence": [0.1] * 3}).to_csv(bad, index=False)
    with pytest.raises(AnnotationError, match=r"irregular\.csv.*regular 0\.5 s grid.*row 3 has time 1\.5 s"):
        read_annotations(bad)
    missing = tmp_path / "nocols.csv"
    pd.DataFrame({"time": [0.0], "arousal": [0.1]}).to_csv(missing, index=False)
    with pytest.raises(AnnotationError, match=r"nocols\.csv.*missing column.*valence"):
        read_annotations(missing)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"not audio at all" * 10)
    from dsaml.errors import AudioError

    with pytest.raises(AudioError, match=r"corrupt\.wav"):
        personalize_audio(base, extractor, corrupt, csv, user="u")


def test_annotation_with_start_offset_and_predict_json(tmp_path, extractor, base):
    audio, csv = _write_song(tmp_path, "offset", seconds=10.0, start=2.0)
    ann = read_annotations(csv)
    assert ann["start_seconds"] == 2.0 and len(ann["arousal"]) == 16
    wave, rate = sf.read(audio, dtype="float32")
    song = align(song_patches(extractor, wave, rate, "offset"), arousal=ann["arousal"], valence=ann["valence"],
                 start_seconds=2.0, frame_rate=2.0, step_seconds=0.5, song_id="offset")
    assert song.start_step == 4 and song.num_steps == 16
    # the JSON `dsaml predict` writes is accepted as an annotation
    as_json = tmp_path / "offset.json"
    as_json.write_text(json.dumps({"time_seconds": (2.0 + 0.5 * np.arange(16)).tolist(),
                                   "arousal": ann["arousal"].tolist(), "valence": ann["valence"].tolist()}))
    again = read_annotations(as_json)
    np.testing.assert_array_equal(again["arousal"], ann["arousal"])
    result = personalize_song(base, song, user="x")
    assert result.info["support_steps"] == 16


def test_cli_personalize_lora_and_full(tmp_path, base, extractor, songs, capsys):
    model_dir = tmp_path / "model"
    base.save_pretrained(model_dir)
    extractor.save_pretrained(model_dir)
    audio, csv = songs["alice"]
    assert main(["--model", str(model_dir), "--audio", str(audio), "--annotations", str(csv), "--user", "alice",
                 "--output", str(tmp_path / "adapters"), "--rank", "4"]) == 0
    assert "support loss" in capsys.readouterr().out
    assert known_users(tmp_path / "adapters") == ["alice"]
    info = json.loads((tmp_path / "adapters" / "alice" / ADAPTER_INFO).read_text())
    assert info["rank"] == 4 and any(n.startswith("dsaml.features.local_cnn") for n in info["stored_whole"])
    assert main(["--model", str(model_dir), "--audio", str(audio), "--annotations", str(csv), "--user", "alice",
                 "--mode", "full", "--output", str(tmp_path / "full")]) == 0
    assert (tmp_path / "full" / "alice" / "model.safetensors").is_file()
    short_audio, short_csv = _write_song(tmp_path, "too_short", seconds=4.0, annotated=8.0)
    assert main(["--model", str(model_dir), "--audio", str(short_audio), "--annotations", str(short_csv),
                 "--user", "bob", "--output", str(tmp_path / "adapters")]) == 1
    assert "too_short.csv" in capsys.readouterr().err


def test_cli_personalize_reports_the_lag_it_stored(tmp_path, extractor, songs, capsys):
    """With a lag-fitting ridge refit, a listener who hears the model's own curve rescaled and 1 s late gets that
    lag: the adapter records it and `dsaml personalize` prints it."""
    model = _model(method="ridge", adapted_parameters=["predictor.out"], max_delay=3, ridge_strength=1e-6)
    model.save_pretrained(tmp_path / "model")
    model.personalization_config.save_pretrained(tmp_path / "model")
    extractor.save_pretrained(tmp_path / "model")
    audio, _ = songs["bob"]
    with torch.no_grad():
        curve = _predict(model, _features(extractor, audio))[0].numpy()
    late = np.concatenate([np.repeat(curve[:1], 2, axis=0), curve[:-2]]) * 1.5 + 0.1
    csv = tmp_path / "late.csv"
    pd.DataFrame({"time": 0.5 * np.arange(len(late)), "arousal": late[:, 0], "valence": late[:, 1]}).to_csv(
        csv, index=False)
    assert main(["--model", str(tmp_path / "model"), "--audio", str(audio), "--annotations", str(csv), "--user",
                 "bob", "--output", str(tmp_path / "adapters")]) == 0
    info = json.loads((tmp_path / "adapters" / "bob" / ADAPTER_INFO).read_text())
    assert info["max_delay"] == 3 and info["delay_steps"] == [2, 2]
    assert "reaction lag (fitted on the song): arousal 1 s, valence 1 s" in capsys.readouterr().out


def test_adapters_push_and_load_through_the_hub(hub_uploads, tmp_path, base, alice):
    from dsaml.personalization.adapters import push_adapters

    save_lora(base, alice, tmp_path / "adapters", rank=4)
    push_adapters(tmp_path / "adapters", "someone/dsaml-adapters")
    assert {"alice/adapter_config.json", "alice/adapter_model.safetensors", f"alice/{ADAPTER_INFO}"} <= set(
        hub_uploads.files("someone/dsaml-adapters"))
    assert hub_uploads.created[0]["repo_type"] == "model" and hub_uploads.uploads[0].ignore_patterns
    from_hub = load_personalized(None, "someone/dsaml-adapters", "alice", model=_model())
    local = load_personalized(None, tmp_path / "adapters", "alice", model=_model())
    inputs = {"input_features": torch.randn(1, 8, 51, 128), "attention_mask": torch.ones(1, 8, dtype=torch.long)}
    torch.testing.assert_close(_predict(from_hub, inputs), _predict(local, inputs), rtol=0, atol=0)
    with pytest.raises(AdapterError, match="another base model"):
        load_personalized(None, "someone/dsaml-adapters", "alice", model=_model(seed=3))
    # and like any PEFT adapter: PeftModel.from_pretrained(folder, subfolder=user) (PeftModel.push_to_hub of the
    # same folder runs end to end in test_hub_server.py)
    from peft import PeftModel

    again = PeftModel.from_pretrained(_model(), str(tmp_path / "adapters"), subfolder="alice", adapter_name="alice")
    torch.testing.assert_close(_predict(again, inputs), _predict(local, inputs), rtol=0, atol=0)
