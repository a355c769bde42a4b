"""The listener's reaction lag: the output delay, its choice by the ridge refit on the support song, how a share
and a saved personalization carry it, and its calibration on validation listeners."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from dsaml.adaptation.ridge import ridge_adapt
from dsaml.adaptation.tensors import DELAY, adaptable_parameters
from dsaml.data.batches import support_batch
from dsaml.data.datasets import annotator_songs, load_pdmer
from dsaml.data.song_store import SongStore
from dsaml.data.tasks import evaluation_tasks
from dsaml.evaluation.protocol import evaluate_tasks, inner_loop
from dsaml.evaluation.summary import summarize
from dsaml.inference.loading import load_model
from dsaml.inference.songs import predict_songs
from dsaml.modeling import DSAMLConfig, DSAMLForDynamicEmotionRecognition
from dsaml.personalization.adapters import load_personalized, save_full, save_lora
from dsaml.personalization.personalize import personalize_song
from dsaml.training.calibration import calibrate_share

RIDGE = {"method": "ridge", "adapted_parameters": ["predictor.out"], "ridge_strength": 0.1}


def test_the_delay_moves_each_dimension_late_and_holds_the_first_value():
    model = DSAMLForDynamicEmotionRecognition(DSAMLConfig(hidden_size=16, num_attention_heads=2, num_hidden_layers=1,
                                                          intermediate_size=16, lstm_hidden_size=8,
                                                          predictor_hidden_size=8, window_steps=8))
    logits = torch.arange(12, dtype=torch.float32).view(1, 6, 2)  # arousal 0 2 4 ..., valence 1 3 5 ...
    assert model.predictor.delay(logits) is logits  # a trained model has no delay
    delayed = model.predictor.delay(logits, torch.tensor([2, 0]))
    assert delayed[0, :, 0].tolist() == [0, 0, 0, 2, 4, 6]
    assert delayed[0, :, 1].tolist() == [1, 3, 5, 7, 9, 11]


@pytest.fixture(scope="module")
def ridge_tiny(synthetic_tiny, trained_tiny):
    rows = load_pdmer(synthetic_tiny, "pdmer_flat", split="test")
    model = _model(trained_tiny)
    store = SongStore(rows, synthetic_tiny, model.config)
    tasks = evaluation_tasks(annotator_songs(rows), support_songs=1, max_query_songs=2, seed=0, support_repeats=2)
    return trained_tiny, store, tasks


def _model(folder, **recipe) -> DSAMLForDynamicEmotionRecognition:
    model = load_model(folder)
    model.personalization_config = model.personalization_config.replace(**{**RIDGE, **recipe})
    return model


@pytest.mark.parametrize("lag", [0, 3])
def test_the_ridge_refit_finds_the_lag_of_a_delayed_listener(ridge_tiny, lag):
    """A listener who hears the model's own curve, rescaled and `lag` steps late: the refit with lags allowed
    picks that lag and fits the song almost exactly; a shorter longest lag cannot."""
    folder, store, tasks = ridge_tiny
    model = _model(folder)
    batch = support_batch(store.songs(tasks[0].support), model.config.window_steps)
    with torch.no_grad():
        own = model(input_features=batch["input_features"], harmonic_features=batch.get("harmonic_features")).logits
        batch["labels"] = model.predictor.delay(1.5 * own + 0.2, torch.tensor([lag, lag]))
    recipe = model.personalization_config
    fast = {n: p.detach() for n, p in adaptable_parameters(model, recipe.adapted_parameters).items()}
    with torch.no_grad():
        refit = ridge_adapt(model, batch, fast, recipe.replace(max_delay=5), strength=1e-6)
        assert refit[DELAY].tolist() == [lag, lag]
        predicted = model.predictor.delay(torch.nn.functional.linear(
            _readout(model, batch), refit["predictor.out.weight"], refit["predictor.out.bias"]), refit[DELAY])
        assert float((predicted - batch["labels"]).abs().max()) < 1e-3
        if lag:
            shorter = recipe.replace(max_delay=lag - 1)
            assert ridge_adapt(model, batch, fast, shorter, strength=1e-6)[DELAY].tolist() == [lag - 1] * 2
        assert DELAY not in ridge_adapt(model, batch, fast, recipe)  # no lag allowed: none fitted


def _readout(model, batch):
    from dsaml.adaptation.ridge import readout_inputs

    return readout_inputs(model, batch)


def test_a_personalization_with_a_lag_predicts_the_same_saved_whole_or_as_an_adapter(ridge_tiny, tmp_path):
    folder, store, tasks = ridge_tiny
    model = _model(folder, max_delay=4)
    support, query = store.songs(tasks[0].support), store.songs(tasks[0].query)
    result = personalize_song(model, support, user="ana", seed=tasks[0].seed)
    lag = result.info["delay_steps"]
    assert lag == result.fast_weights[DELAY].tolist() and lag[0] == lag[1] and 0 <= lag[0] <= 4
    assert result.info["max_delay"] == 4
    window, hop = model.config.window_steps, model.config.hop_steps
    expected = predict_songs(result.model, query, window, hop)
    save_full(result, tmp_path / "full", base=model)
    reloaded = DSAMLForDynamicEmotionRecognition.from_pretrained(tmp_path / "full").eval()
    assert reloaded.predictor.delay.steps.tolist() == lag
    save_lora(model, result, tmp_path / "adapters")
    adapter = load_personalized(folder, tmp_path / "adapters", "ana")  # wraps (and freezes) the base it loads
    for other in (reloaded, adapter):
        for a, b in zip(expected, predict_songs(other, query, window, hop)):
            np.testing.assert_allclose(a, b, atol=1e-5)
    # a dimension that keeps none of the change keeps no lag either; another inner loop gets none
    half = personalize_song(model, support, share=(0.0, 1.0), seed=tasks[0].seed)
    assert half.info["delay_steps"] == [0, lag[1]]
    assert personalize_song(model, support, steps=model.personalization_config.steps + 1).info["delay_steps"] == [0, 0]


def test_the_calibrated_lag_and_share_score_what_the_calibration_said(ridge_tiny):
    folder, store, tasks = ridge_tiny
    model = _model(folder)
    share, max_delay, info = calibrate_share(model, store, tasks, delays=(0, 3))
    assert set(info["delays"]) == {0, 3} and info["max_delay"] == max_delay
    assert info["delays"][max_delay]["rmse_calibrated"] == min(d["rmse_calibrated"] for d in info["delays"].values())
    for lag in (0, 3):  # each candidate's calibrated RMSE is what personalization with it scores
        lag_share, lag_info = calibrate_share(model, store, tasks, delays=(lag,))[0::2]
        model.personalization_config = model.personalization_config.replace(share=list(lag_share), max_delay=lag)
        for mode in ("full", "lora"):
            scored = summarize(evaluate_tasks(model, store, tasks, inner_loop(mode=mode)))
            for dim in ("arousal", "valence"):
                assert scored[f"after/{dim}_rmse"] == pytest.approx(lag_info[dim]["rmse_calibrated"], abs=1e-5)
                assert scored[f"before/{dim}_rmse"] == pytest.approx(lag_info[dim]["rmse_unpersonalized"], abs=1e-6)
    # an inner loop other than the ridge refit has no lag to choose
    sgd = DSAMLForDynamicEmotionRecognition.from_pretrained(folder).eval()
    assert calibrate_share(sgd, store, tasks[:1])[1] == 0


def test_a_checkpoint_saved_before_the_delay_existed_loads_without_one(trained_tiny, tmp_path):
    model = DSAMLForDynamicEmotionRecognition.from_pretrained(trained_tiny)
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    assert DELAY in weights
    del weights[DELAY]
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    old = DSAMLForDynamicEmotionRecognition.from_pretrained(tmp_path)
    assert old.predictor.delay.steps.tolist() == [0, 0]


def test_users_with_different_lags_switch_with_their_adapters(ridge_tiny, tmp_path):
    """Each user's adapter carries their own lag: switching adapters (PEFT `set_adapter`) switches the lag, and
    each user's curves are those of their full personalized model."""
    from dsaml.personalization.adapters import add_user

    folder, store, tasks = ridge_tiny
    model = _model(folder, max_delay=4)
    query = store.songs(tasks[0].query)
    window, hop = model.config.window_steps, model.config.hop_steps
    expected = {}
    for user, lag in (("ana", 3), ("ben", 0)):
        result = personalize_song(model, store.songs(tasks[0].support), user=user, seed=tasks[0].seed, max_delay=lag)
        assert result.info["delay_steps"] == [lag, lag] or lag == 0
        expected[user] = (result.info["delay_steps"], predict_songs(result.model, query, window, hop))
        save_lora(model, result, tmp_path)
    assert expected["ana"][0] != expected["ben"][0]
    peft_model = add_user(load_personalized(folder, tmp_path, "ana"), tmp_path, "ben")
    for user in ("ben", "ana", "ben"):
        peft_model.set_adapter(user)
        for a, b in zip(expected[user][1], predict_songs(peft_model, query, window, hop)):
            np.testing.assert_allclose(a, b, atol=1e-5)


def test_adapters_made_before_the_lag_existed_still_match_their_base(trained_tiny):
    """The base fingerprint leaves a zero lag out: the same weights without the delay buffer (a model saved
    before it existed) fingerprint the same; a lag set in the weights does not."""
    from dsaml.personalization.adapters import base_fingerprint

    model = DSAMLForDynamicEmotionRecognition.from_pretrained(trained_tiny)
    before = copy.deepcopy(model)
    before.predictor.delay = torch.nn.Identity()  # no buffer: the state dict of a model from before the lag
    assert DELAY not in before.state_dict() and DELAY in model.state_dict()
    assert base_fingerprint(model) == base_fingerprint(before)
    model.predictor.delay.steps.fill_(2)
    assert base_fingerprint(model) != base_fingerprint(before)
