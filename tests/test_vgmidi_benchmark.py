"""The real-listener benchmark's own arithmetic: the leave-one-out crowd reference, its place among the
evaluation's reference points, the bootstrap intervals and the both-ways tasks (hand-made numbers)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dsaml.adaptation.config import PersonalizationConfig
from dsaml.data.alignment import AlignedSong
from dsaml.evaluation.protocol import reference_points
from dsaml.evaluation.references import CrowdReferences
from dsaml.evaluation.scores import score_songs

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCHMARKS) not in sys.path:  # the script imports its sibling `common`, as when run from there
    sys.path.append(str(BENCHMARKS))
_spec = importlib.util.spec_from_file_location("vgmidi_benchmark", BENCHMARKS / "vgmidi.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def song(labels: np.ndarray, start_step: int = 0, annotator: str = "L2", steps: int | None = None,
         config=None) -> AlignedSong:
    steps = steps or len(labels)
    features = torch.zeros(steps, *(config.frames_per_step, config.num_mel_bins) if config else (1, 1))
    return AlignedSong("p", annotator, features, torch.tensor(labels, dtype=torch.float32), start_step)


# three listeners of piece "p" over 4 steps, (arousal, valence) per step
OWN = np.array([[0.1, -0.2], [0.3, 0.0], [0.5, 0.2], [0.7, 0.4]])
L1 = OWN + 0.1 + 0.2  # the two others average to OWN + 0.1
L3 = OWN + 0.1 - 0.2


def crowd() -> CrowdReferences:
    return CrowdReferences({"p": (OWN + L1 + L3) / 3}, {"p": 3})


def test_crowd_reference_leaves_the_listener_out():
    reference = crowd()
    np.testing.assert_allclose(reference.others(song(OWN)), OWN + 0.1, atol=1e-6)
    # cut to the song's labelled steps like its annotation: steps 1-2 of the piece
    np.testing.assert_allclose(reference.others(song(OWN[1:3], start_step=1)), OWN[1:3] + 0.1, atol=1e-6)
    assert list(reference.curves([song(OWN)])) == ["crowd"]
    with pytest.raises(ValueError, match="no other listener"):
        CrowdReferences({"p": OWN}, {"p": 1}).others(song(OWN))


def test_reference_points_score_the_crowd(model):
    query = song(OWN, config=model.config, steps=4)
    base = [np.zeros((4, 2), dtype=np.float32)]
    points = reference_points(model, [query], [query], base, [OWN], 4, 2, crowd(), 0.5)
    assert set(points) == {"shift", "linear", "crowd"}
    # the crowd is the listener's curve + 0.1: RMSE 0.1, perfectly correlated, CCC 2 var / (2 var + 0.01)
    assert points["crowd"]["arousal_rmse"] == pytest.approx(0.1, abs=1e-6)
    assert points["crowd"]["valence_pearson"] == pytest.approx(1.0, abs=1e-6)
    var = OWN[:, 0].var()
    assert points["crowd"]["arousal_ccc"] == pytest.approx(2 * var / (2 * var + 0.01), abs=1e-5)
    assert points["crowd"] == pytest.approx(score_songs([OWN + 0.1], [OWN]), abs=1e-6)


def test_bootstrap_interval_by_hand():
    assert bench.bootstrap_ci([0.3] * 5) == {"mean": pytest.approx(0.3), "low": pytest.approx(0.3),
                                             "high": pytest.approx(0.3), "n": 5}
    # two values: a resample's mean is 0 (1/4), 0.5 (1/2) or 1 (1/4), so the 2.5 / 97.5 % points are 0 and 1
    ci = bench.bootstrap_ci([0.0, 1.0])
    assert (ci["mean"], ci["low"], ci["high"]) == (0.5, 0.0, 1.0)
    # any other statistic goes through the same resamples: the median of [0, 1, 2] lies in [0, 2]
    ci = bench.bootstrap_ci([0.0, 1.0, 2.0], np.median)
    assert ci["mean"] == 1.0 and ci["low"] == 0.0 and ci["high"] == 2.0


def test_pooled_pearson_counts_levels_between_pieces():
    # within each piece the prediction is flat (within-piece r 0) but follows the pieces' levels k = 0..3:
    # var(k) = 1.25, so cov = 0.1 x 0.2 x 1.25, var_p = 0.01 x 1.25, var_t = 0.04 x 1.25 + 0.0002 / 3
    pieces = [(np.full(3, 0.1 * k), np.full(3, 0.2 * k) + np.array([-0.01, 0.0, 0.01])) for k in range(4)]
    expected = 0.025 / np.sqrt(0.0125 * (0.05 + 0.0002 / 3))
    assert bench.pooled_pearson(pieces) == pytest.approx(expected, abs=1e-9)
    exact = [(np.arange(3.0) + k, 2 * (np.arange(3.0) + k) + 1) for k in range(3)]
    ci = bench.bootstrap_ci(exact, bench.pooled_pearson, resamples=50)
    assert ci["mean"] == pytest.approx(1.0) and ci["low"] == pytest.approx(1.0)
    assert bench.pooled_pearson([(np.zeros(3), np.arange(3.0))]) == 0.0  # a constant


def test_both_ways_tasks_and_personalization_effect():
    tasks = bench.both_ways_tasks({"b": [5, 9], "a": [0, 1]}, seed=0)
    assert [(t.annotator, t.support, t.query) for t in tasks] == [
        ("a", (0,), (1,)), ("a", (1,), (0,)), ("b", (5,), (9,)), ("b", (9,), (5,))]
    assert [t.index for t in tasks] == [0, 1, 2, 3] and len({t.seed for t in tasks}) == 4
    records = [{"after/arousal_rmse": a, "before/arousal_rmse": b, "after/valence_rmse": 0.2,
                "before/valence_rmse": 0.2} for a, b in ((0.20, 0.30), (0.32, 0.30), (0.305, 0.30))]
    effect = bench.personalization_effect(records, resamples=100, seed=0)
    assert effect["arousal"]["rmse_after_minus_before"]["mean"] == pytest.approx((-0.1 + 0.02 + 0.005) / 3)
    assert (effect["arousal"]["listeners_better"], effect["arousal"]["listeners_worse"],
            effect["arousal"]["listeners_worse_by_0.01"]) == (1, 2, 1)
    assert effect["valence"]["listeners_worse"] == 0 and "rmse_after_minus_crowd" not in effect["valence"]


@pytest.mark.slow  # about 5 s on a quiet machine (the build renders 11 short pieces), 15 s on a busy one
def test_benchmark_on_a_miniature_release(tmp_path):
    """The whole script's figures on the VGMIDI builder's miniature release and a tiny untrained model."""
    from argparse import Namespace

    from conftest import small_config, with_recipe
    from test_datasets_vgmidi import FRACTIONS, RATE, write_release

    from dsaml.data.datasets import load_dmer
    from dsaml.datasets_scripts import build_vgmidi
    from dsaml.modeling import DSAMLForDynamicEmotionRecognition

    root = build_vgmidi(write_release(tmp_path / "vgmidi"), tmp_path / "data", sample_rate=RATE,
                        cache_dir=tmp_path / "cache", **FRACTIONS)
    torch.manual_seed(0)
    model = DSAMLForDynamicEmotionRecognition(small_config(
        window_steps=4, inference_hop_steps=4, local_context_steps=2, global_context_steps=3,
        global_context_seconds=2.0, learn_adaptation_ridge=True)).eval()
    model.predictor.ridge.reset(0.1, 0.5)
    with_recipe(model, adapted_parameters=["predictor.out"], steps=2, method="ridge", ridge_strength=0.1,
                level_share=0.5)
    args = Namespace(partition="test", max_annotators=None, adaptation_steps=None, adaptation_lr=None,
                     resamples=20, seed=0)
    figures = bench.personalization_figures(args, model, root)
    recipe = figures["personalization"]
    assert (recipe["method"], recipe["ridge_strength"], recipe["share"], recipe["max_delay"]) == (
        "ridge", 0.1, [1.0, 1.0], 0)
    learned = figures["learned_ridge"]  # the model's own settings (here still their starting values)
    assert learned["strength"] == pytest.approx({"arousal": 0.1, "valence": 0.1})
    assert learned["level_share"] == pytest.approx({"arousal": 0.5, "valence": 0.5})
    assert figures["tasks"] == 2 * figures["listeners"] > 0
    assert set(figures["methods"]) == {"before", "after", "crowd", "shift", "linear"}
    crowd = figures["methods"]["crowd"]["arousal_rmse"]["mean"]
    assert figures["summary"]["crowd/arousal_rmse"] == pytest.approx(crowd)
    assert sum(g["listeners"] for g in figures["by_musicianship"].values()) == figures["listeners"]
    dmer = bench.dmer_figures(args, model, root)
    train = load_dmer(root, split="train")
    assert dmer["constant"]["valence"] == pytest.approx(float(np.concatenate(train["valence"]).mean()))
    assert dmer["pieces"] == len(load_dmer(root, split="test"))


def test_table_names_the_inner_loop_the_result_used():
    """The VGMIDI table's sentence names the personalization of the run: SGD steps (results written before the
    ridge method carry no `adaptation_method`), the ridge refit, the do-no-harm rule when it was on, and the
    calibrated share when it is not the full step."""
    import accuracy_tables as make_table

    sgd = {"adaptation_steps": 5, "adaptation_lr": 0.1, "adapted_parameters": ["predictor.dense", "predictor.out"]}
    assert make_table.vgmidi_inner_loop(sgd) == "5 inner steps at lr 0.1 on predictor.dense, predictor.out"
    ridge = {**sgd, "adapted_parameters": ["predictor.out"], "adaptation_method": "ridge", "adaptation_ridge": 0.1,
             "adaptation_holdout": 0.0}
    assert make_table.vgmidi_inner_loop(ridge) == "predictor.out refitted by ridge (strength 0.1)"
    assert make_table.vgmidi_inner_loop({**ridge, "adaptation_holdout": 0.25}) == (
        "predictor.out refitted by ridge (strength 0.1), do-no-harm rule on the last 25% of the support piece")
    learned = {**ridge, "learned_ridge": {"strength": {"arousal": 12.345, "valence": 0.5},
                                          "level_share": {"arousal": 0.031, "valence": 0.4}}}
    assert make_table.vgmidi_inner_loop(learned) == (
        "predictor.out refitted by the meta-learned ridge (strength 12.3 / 0.5, level share 0.03 / 0.40, "
        "arousal / valence)")
    assert make_table.vgmidi_inner_loop({**ridge, "adaptation_share": [0.0, 0.25]}) == (
        "predictor.out refitted by ridge (strength 0.1), step kept 0.00 / 0.25 (`share`)")
    # results written after the recipe left the architecture config record it whole
    current = {"personalization": {**PersonalizationConfig(method="ridge", ridge_strength=0.1,
                                                            adapted_parameters=["predictor.out"]).to_dict(),
                                   "max_delay": 6}}
    assert make_table.vgmidi_inner_loop(current) == (
        "predictor.out refitted by ridge (strength 0.1), reaction lag fitted up to 6 steps (`max_delay`)")
    assert make_table.share_sentence([1.0, 1.0], "song", 4) == (
        " The refit also fits the listener's reaction lag, up to 4 steps (the personalization config's `max_delay`).")
