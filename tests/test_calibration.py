"""Calibrating the adaptation share on validation listeners: exact blends, the choice, and that personalization
with the chosen share scores what the calibration said."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dsaml.data.datasets import annotator_songs, load_pdmer
from dsaml.data.song_store import SongStore
from dsaml.data.tasks import evaluation_tasks
from dsaml.evaluation.protocol import evaluate_tasks, inner_loop
from dsaml.evaluation.scores import score_songs
from dsaml.evaluation.summary import summarize
from dsaml.inference.loading import load_model
from dsaml.modeling import DSAMLForDynamicEmotionRecognition
from dsaml.personalization.personalize import personalize_song
from dsaml.training.calibration import SHARE_GRID, blended_rmse, calibrate_share, choose_share, share_errors

GRID = np.asarray(SHARE_GRID)
READ_OUT = ["predictor.dense", "predictor.out"]


def test_blended_rmse_is_the_rmse_of_each_blend():
    rng = np.random.default_rng(0)
    lengths = (7, 12, 30)
    base = [rng.normal(size=(n, 2)) for n in lengths]
    adapted = [b + rng.normal(size=b.shape) for b in base]
    labels = [rng.normal(size=(n, 2)) for n in lengths]
    shares = (0.0, 0.3, 1.0, 1.4)
    expected = [[score_songs([b + a * (f - b) for b, f in zip(base, adapted)], labels)[key]
                 for key in ("arousal_rmse", "valence_rmse")] for a in shares]
    np.testing.assert_allclose(blended_rmse(base, adapted, labels, shares), expected, rtol=1e-10)


def _curves(centre_arousal: float) -> np.ndarray:
    """Query RMSE over the grid: arousal (a - c)^2 + 1, valence flat at 0.5."""
    return np.stack([(GRID - centre_arousal) ** 2 + 1.0, np.full(len(GRID), 0.5)], axis=1)


def test_the_choice_averages_each_listeners_tasks_first_and_ties_go_to_the_meta_trained_step():
    # listener A's two tasks want no adaptation, B's one task all of it: per listener the mean is lowest at
    # 0.5; pooling the three tasks would give 1/3 (grid 0.35)
    errors = [("A", _curves(0.0), True), ("A", _curves(0.0), True), ("B", _curves(1.0), True)]
    share, info = choose_share(errors)
    assert share == (0.5, 1.0)  # valence is flat: the tie goes to the share nearest 1
    assert (info["listeners"], info["tasks"], info["per_dimension"]) == (2, 3, True)
    assert info["arousal"]["rmse_unpersonalized"] == pytest.approx((1.0 + 2.0) / 2)
    assert info["arousal"]["rmse_meta_trained"] == pytest.approx((2.0 + 1.0) / 2)
    assert info["arousal"]["rmse_calibrated"] == pytest.approx(1.25)
    assert info["arousal"]["listeners_worse_by_0.01"] == 1  # A: 1.25 against 1.0 unpersonalized
    assert info["valence"]["listeners_worse_by_0.01"] == 0
    # weights that do not read out linearly get one share for both dimensions
    assert choose_share([(a, e, False) for a, e, _ in errors])[0] == (0.5, 0.5)
    with pytest.raises(ValueError, match="at least one validation task"):
        choose_share([])


@pytest.fixture(scope="module")
def tiny_store(synthetic_tiny, trained_tiny):
    model = load_model(trained_tiny)
    rows = load_pdmer(synthetic_tiny, "pdmer_flat", split="test")
    store = SongStore(rows, synthetic_tiny, model.config)
    tasks = evaluation_tasks(annotator_songs(rows), support_songs=1, max_query_songs=2, seed=0, support_repeats=2)
    return trained_tiny, store, tasks


def _model(folder, **recipe) -> DSAMLForDynamicEmotionRecognition:
    model = load_model(folder)
    model.personalization_config = model.personalization_config.replace(**recipe)
    return model


def _scored(model, store, tasks, share, mode: str = "full") -> dict:
    recipe = model.personalization_config
    model.personalization_config = recipe.replace(share=list(share))
    try:
        return summarize(evaluate_tasks(model, store, tasks, inner_loop(mode=mode)))
    finally:
        model.personalization_config = recipe


def test_personalization_with_the_calibrated_share_scores_what_the_calibration_said(tiny_store):
    """Full weights and the LoRA adapter alike."""
    folder, store, tasks = tiny_store
    model = _model(folder, adapted_parameters=READ_OUT)
    share, _, info = calibrate_share(model, store, tasks)
    model.personalization_config = model.personalization_config.replace(share=[0.0, 0.0])
    assert calibrate_share(model, store, tasks)[0] == share  # the calibration ignores the model's own share
    model.personalization_config = model.personalization_config.replace(share=[1.0, 1.0])
    calibrated, plain = _scored(model, store, tasks, share), _scored(model, store, tasks, (1.0, 1.0))
    for dim in ("arousal", "valence"):
        assert calibrated[f"after/{dim}_rmse"] == pytest.approx(info[dim]["rmse_calibrated"], abs=1e-5)
        assert plain[f"after/{dim}_rmse"] == pytest.approx(info[dim]["rmse_meta_trained"], abs=1e-5)
        assert plain[f"before/{dim}_rmse"] == pytest.approx(info[dim]["rmse_unpersonalized"], abs=1e-6)
    lora = _scored(model, store, tasks, share, mode="lora")
    assert lora["after/rmse"] == pytest.approx(calibrated["after/rmse"], abs=1e-5)
    # a share of 0 is the unpersonalized model
    zero = _scored(model, store, tasks, (0.0, 0.0))
    assert zero["after/rmse"] == pytest.approx(zero["before/rmse"], abs=1e-6)


def test_the_share_belongs_to_the_configs_own_inner_loop(tiny_store):
    """Another step count or learning rate is another inner loop: it keeps all of its change. A share of 0 says
    so in the result."""
    folder, store, tasks = tiny_store
    model = _model(folder, adapted_parameters=READ_OUT, share=[0.0, 0.0])
    support = store.songs(tasks[0].support)
    base = dict(model.named_parameters())
    own = personalize_song(model, support)
    assert own.info["shrinkage"] == [0.0, 0.0] and "keeps none of the adapted change" in own.info["note"]
    assert all(torch.equal(value, base[name].detach()) for name, value in own.fast_weights.items())
    other = personalize_song(model, support, steps=model.personalization_config.steps + 1)
    assert other.info["shrinkage"] == [1.0, 1.0] and "note" not in other.info
    assert any(not torch.equal(value, base[name].detach()) for name, value in other.fast_weights.items())


def test_weights_that_do_not_read_out_linearly_are_scored_blend_by_blend(tiny_store):
    folder, store, tasks = tiny_store
    model = _model(folder, adapted_parameters=[])  # every weight: one share for both dimensions
    errors = share_errors(model, store, tasks[:1])[None]  # the model's own lag (none)
    assert not any(linear for _, _, linear in errors)
    results = evaluate_tasks(model, store, tasks[:1], inner_loop())
    for (_, rmse, _), result in zip(errors, results):
        at = (lambda a: int(np.flatnonzero(np.isclose(GRID, a))[0]))
        np.testing.assert_allclose(rmse[at(0.0)], [result.before["arousal_rmse"], result.before["valence_rmse"]],
                                   atol=1e-6)
        np.testing.assert_allclose(rmse[at(1.0)], [result.after["arousal_rmse"], result.after["valence_rmse"]],
                                   atol=1e-5)
    # such an inner loop cannot keep a different share per dimension
    support = store.songs(tasks[0].support)
    with pytest.raises(ValueError, match="only the predictor's linear read-out"):
        personalize_song(model, support, share=(0.5, 1.0))
    same = personalize_song(model, support, share=(0.0, 0.0))
    base = dict(model.named_parameters())
    assert all(torch.equal(value, base[name].detach()) for name, value in same.fast_weights.items())
