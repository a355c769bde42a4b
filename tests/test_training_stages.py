"""Training in stages: chained folders and initialization, resuming after a finished stage, and what a stage adds
(learned ridge settings, the average read-out, the calibrated share and reaction lag)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from training_run import one_thread, parameters, tiny

from dsaml.inference.loading import load_model
from dsaml.training.config_files import load_arguments
from dsaml.training.loop import train


def test_stages_chain_output_folders_and_initialization():
    args = load_arguments("synthetic_tiny", {"output_dir": "runs/x", "push_to_hub": True, "hub_model_id": "a/b",
                                             "stages": [{"name": "pretrain", "data_config": "dmer", "algorithm": "plain",
                                                         "max_steps": 3, "personalization": {"steps": 1}},
                                                        {"name": "meta"}]})
    (first_name, first), (second_name, second) = args.stage_arguments()
    assert (first_name, second_name) == ("pretrain", "meta")
    assert first.output_dir == str(Path("runs/x/stages/pretrain")) and second.output_dir == "runs/x"
    assert first.init_from is None and second.init_from == str(Path("runs/x/stages/pretrain/best"))
    assert (first.algorithm, first.max_steps, first.data_config) == ("plain", 3, "dmer")
    assert (second.algorithm, second.max_steps) == ("fomaml", 4)  # the run's own values
    assert first.personalization == {"steps": 1, "learning_rate": 0.05}  # merged
    assert first.model["hidden_size"] == 32
    assert not first.push_to_hub and second.push_to_hub  # only the finished model is published
    assert [n for n, _ in load_arguments("synthetic_tiny").stage_arguments()] == ["main"]
    with pytest.raises(ValueError, match="cannot set stages, output_dir or init_from"):
        load_arguments("synthetic_tiny", {"stages": [{"name": "a", "output_dir": "elsewhere"}]})
    with pytest.raises(ValueError, match="stage names must be unique"):
        load_arguments("synthetic_tiny", {"stages": [{"name": "a"}, {"name": "a"}]})
    with pytest.raises(ValueError, match="unknown training argument"):
        load_arguments("synthetic_tiny", {"stages": [{"name": "a", "steps": 3}]}).stage_arguments()


def test_run_stages_resumes_after_the_last_finished_stage(tmp_path, monkeypatch):
    import dsaml.training.stages
    from dsaml.training.stages import DONE, run_stages

    calls = []
    monkeypatch.setattr(dsaml.training.stages, "train", lambda a: calls.append(a.output_dir) or {"stage": a.output_dir})
    stages = [{"name": "one"}, {"name": "two"}, {"name": "three"}]
    args = load_arguments("synthetic_tiny", {"output_dir": str(tmp_path), "stages": stages})
    (tmp_path / "stages" / "one").mkdir(parents=True)
    (tmp_path / "stages" / "one" / DONE).write_text("{}")  # finished: its best/ is the next stage's start
    final = run_stages(args)
    assert calls == [str(tmp_path / "stages" / "two"), str(tmp_path)]
    assert final == {"stage": str(tmp_path)}


def test_summary_text_lists_each_reported_partition_once():
    """`best/<select_metric>` is not a partition (a dmer run selects on validation/before/ccc)."""
    from dsaml.training.final_report import _summary_text

    scores = {f"{m}/{k}": 0.5 for m in ("before", "after") for k in
              ("rmse", "arousal_rmse", "valence_rmse", "pearson", "ccc")}
    final = {"best_step": 3, "best/validation/before/ccc": 0.5, "validation/annotators": 1,
             **{f"validation/{k}": v for k, v in scores.items()}, "test/annotators": 2,
             **{f"test/{k}": v for k, v in scores.items()}}
    text = _summary_text(final)
    assert text.index("validation (1 annotators):") < text.index("test (2 annotators):")
    assert "best (" not in text and text.count("before personalization") == 2


def test_a_stage_that_learns_the_ridge_settings_adds_trains_saves_and_logs_them(run, tmp_path):
    """A stage that turns `learn_adaptation_ridge` on, from a saved model without it: the settings start at the
    recipe's values, move at `ridge_learning_rate`, are logged each step, and travel with the saved model."""
    from dsaml.modeling import DSAMLForDynamicEmotionRecognition

    out = tmp_path / "ridge"
    recipe = {"method": "ridge", "ridge_strength": 0.1, "level_share": 0.5, "adapted_parameters": ["predictor.out"]}
    with one_thread():
        train(tiny(out, init_from=str(run[0] / "best"), model={"learn_adaptation_ridge": True},
                   personalization=recipe, ridge_learning_rate=0.5, max_steps=2, evaluate_test=False))
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # Adam's first step moves each setting by about its learning rate (0.5 on the log / logit scale)
    first = records[0]
    assert abs(math.log(first["ridge/strength_arousal"] / 0.1)) == pytest.approx(0.5, rel=0.05)
    assert abs(math.log(first["ridge/level_share_valence"] / 0.5) + math.log(
        (1 - 0.5) / (1 - first["ridge/level_share_valence"]))) == pytest.approx(0.5, rel=0.05)
    saved = parameters(out / "last")
    assert set(saved["predictor.ridge.log_strength"].shape) == {2}
    reloaded = DSAMLForDynamicEmotionRecognition.from_pretrained(out / "last")
    strength, share = (v.tolist() for v in reloaded.predictor.ridge())
    assert strength == pytest.approx([records[-1]["ridge/strength_arousal"], records[-1]["ridge/strength_valence"]])
    assert share == pytest.approx([records[-1]["ridge/level_share_arousal"], records[-1]["ridge/level_share_valence"]])
    # the base model's weights moved at the run's own learning rate, far less than the settings
    before, after = parameters(run[0] / "best"), saved
    change = (after["predictor.out.weight"] - before["predictor.out.weight"]).abs().max()
    assert 0 < change < 0.01


def test_a_stage_that_fits_the_average_readout_refits_the_output_layer_on_the_training_rows(run, tmp_path, capsys):
    """`fit_average_readout`: before the first step, the output layer is the ridge fit on the meta-training rows
    (validation listeners held out), the same as calling `fit_average_readout` on them; the run says so."""
    from dsaml.modeling import DSAMLForDynamicEmotionRecognition
    from dsaml.training.average_readout import fit_average_readout
    from dsaml.training.run import setup

    args = tiny(tmp_path / "average", init_from=str(run[0] / "best"), fit_average_readout=True, evaluate_test=False)
    with one_thread():
        started = setup(args)
    assert "output layer refitted to the average training listener (RMSE on the training rows: arousal" \
        in capsys.readouterr().out
    validation = {t.annotator for t in started.data.validation_tasks}
    rows = started.data.training_rows()
    assert validation and not validation & {started.data.train.rows[i]["annotator"] for i in rows}
    by_hand = DSAMLForDynamicEmotionRecognition.from_pretrained(run[0] / "best", dtype=torch.float32)
    fit_average_readout(by_hand, started.data.train, rows, by_hand.config.window_steps)
    for name in ("weight", "bias"):
        fitted = getattr(started.model.predictor.out, name)
        assert torch.allclose(fitted, getattr(by_hand.predictor.out, name), atol=1e-6)
        assert not torch.allclose(fitted, parameters(run[0] / "best")[f"predictor.out.{name}"], atol=1e-3)
    # resumed from a checkpoint, the stage keeps the checkpoint's layer: it refits once, at its first start
    with one_thread():
        first = train(tiny(tmp_path / "average", init_from=str(run[0] / "best"), fit_average_readout=True,
                           evaluate_test=False, max_steps=2))
        capsys.readouterr()
        resumed = setup(tiny(tmp_path / "average", init_from=str(run[0] / "best"), fit_average_readout=True,
                             evaluate_test=False, max_steps=4))
    assert "refitted" not in capsys.readouterr().out
    # the refit's figures reach the final report, and a resumed run still has them (the checkpoint keeps them)
    for dim in ("arousal", "valence"):
        assert first[f"average_readout/{dim}/rmse_after"] < first[f"average_readout/{dim}/rmse_before"]
    assert resumed.state["average_readout"] == {k: v for k, v in first.items() if k.startswith("average_readout/")}
    saved = parameters(tmp_path / "average" / "checkpoints" / "step_000002")
    assert torch.equal(resumed.model.predictor.out.weight.detach(), saved["predictor.out.weight"])


def test_a_stage_that_calibrates_the_adaptation_share_saves_it_with_the_best_model(run, tmp_path, capsys):
    """`calibrate_adaptation`: after training, the share chosen on the final report's validation tasks goes into
    best/'s config and the run's metrics; finishing again (the finished command rerun) chooses the same; a run
    started from a calibrated model meta-trains and validates the full step."""
    from dsaml.training.calibration import calibrate_share
    from dsaml.training.model_setup import build_model
    from dsaml.training.run import setup

    out = tmp_path / "calibrated"
    args = tiny(out, init_from=str(run[0] / "best"), calibrate_adaptation=True, max_steps=2, evaluate_test=False,
                personalization={"adapted_parameters": ["predictor.dense", "predictor.out"]})
    with one_thread():
        final = train(args)
    assert "adaptation share (validation listeners): arousal" in capsys.readouterr().out
    saved = load_model(out / "best")
    share = saved.personalization_config.share
    assert json.loads((out / "best" / "config.json").read_text()) == json.loads(
        (out / "last" / "config.json").read_text())  # the calibration leaves the architecture config alone
    assert share == [final["calibration/arousal/share"], final["calibration/valence/share"]]
    for dim in ("arousal", "valence"):  # the final report scores the validation listeners with the share
        assert final[f"validation/after/{dim}_rmse"] == pytest.approx(final[f"calibration/{dim}/rmse_calibrated"],
                                                                      abs=1e-5)
    with one_thread():
        started = setup(args)  # resumes at its last step: the run's own validation tasks
        assert list(calibrate_share(saved, started.data.validation, started.data.final_validation_tasks)[0]) == share
        again = train(args)
    assert [again["calibration/arousal/share"], again["calibration/valence/share"]] == share
    saved.save_pretrained(tmp_path / "shrunk")
    saved.personalization_config.replace(share=[0.3, 0.4]).save_pretrained(tmp_path / "shrunk")
    assert build_model(tiny(tmp_path / "next", init_from=str(tmp_path / "shrunk"))).personalization_config.share == [
        1.0, 1.0]


def test_a_ridge_stage_calibrates_the_reaction_lag_with_the_share(run, tmp_path, capsys):
    """With the ridge refit the calibration also chooses the longest reaction lag (`DELAY_GRID`), saves it in
    best/'s config, and the final report scores the validation listeners with it; a run started from that model
    fits no lag until it is calibrated again."""
    from dsaml.training.model_setup import build_model

    out = tmp_path / "lagged"
    args = tiny(out, init_from=str(run[0] / "best"), calibrate_adaptation=True, max_steps=1, evaluate_test=False,
                personalization={"method": "ridge", "adapted_parameters": ["predictor.out"]})
    with one_thread():
        final = train(args)
    printed = capsys.readouterr().out
    saved = load_model(out / "best")
    lag = saved.personalization_config.max_delay
    assert lag == final["calibration/max_delay"]
    scores = {d: final[f"calibration/lag_{d}/rmse"] for d in (0, 2, 4, 6)}
    assert scores[lag] == min(scores.values())
    assert f"reaction lag up to {lag} steps" in printed
    for dim in ("arousal", "valence"):
        assert final[f"validation/after/{dim}_rmse"] == pytest.approx(final[f"calibration/{dim}/rmse_calibrated"],
                                                                      abs=1e-5)
    saved.save_pretrained(tmp_path / "with_lag")
    saved.personalization_config.replace(max_delay=4).save_pretrained(tmp_path / "with_lag")
    started = build_model(tiny(tmp_path / "next", init_from=str(tmp_path / "with_lag"),
                               personalization={"method": "ridge", "adapted_parameters": ["predictor.out"]}))
    assert started.personalization_config.max_delay == 0
