"""The training loop end to end on the tiny synthetic set: outputs, exact resume, 2 processes = 1 process,
configuration errors, and the Hub push through the path users run (against the local fake Hub)."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dsaml.commands.train import build_parser, parse_overrides
from dsaml.errors import TaskError
from dsaml.training.arguments import TrainingArguments, load_arguments
from dsaml.training.loop import train

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cache(dsaml_cache, synthetic_tiny):
    """The session's synthetic cache (the tiny set builds once), also for subprocesses."""
    return dsaml_cache


def tiny(output_dir: Path, **overrides) -> TrainingArguments:
    return load_arguments("synthetic_tiny", {"output_dir": str(output_dir), "progress": False, **overrides})


@contextmanager
def one_thread():
    """Runs compared across process counts use one thread each: a different intra-op split changes float
    rounding, which Adam's normalization amplifies in near-zero gradient components."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def parameters(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a saved model: weights and the normalization statistics."""
    return load_file(str(folder / "model.safetensors"))


@pytest.fixture(scope="module")
def run(cache, tmp_path_factory):
    """The reference run: 4 outer steps, validation and checkpoints every 2."""
    out = tmp_path_factory.mktemp("run") / "full"
    with one_thread():
        final = train(tiny(out))
    return out, final


def test_run_writes_models_metrics_results_and_plot(run):
    out, final = run
    for name in ("best", "last"):
        files = {p.name for p in (out / name).iterdir()}
        assert {"config.json", "model.safetensors", "preprocessor_config.json", "modeling_dsaml.py",
                "configuration_dsaml.py", "README.md"} <= files
        assert not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)  # weights only as safetensors
        umask = os.umask(0)
        os.umask(umask)
        assert (out / name / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask  # not safetensors' 0600
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert [("validation/after/ccc" in r) for r in records] == [False, True, False, True]
    assert all(torch.isfinite(torch.tensor(r["train/query_loss"])) for r in records)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_000002", "step_000004"]
    results = json.loads((out / "test_results.json").read_text())
    # the final report: each listener over evaluation_support_repeats (4) support songs
    assert len(results["validation"]) == 4 and {r["annotator"] for r in results["validation"]} == {"L002"}
    assert len(results["test"]) == final["test/tasks"] == 4 * final["test/annotators"] and final["test/annotators"] >= 1
    assert len({(r["annotator"], *r["support_songs"]) for r in results["test"]}) == final["test/tasks"]
    assert "test/gap_closed/after/overall" in final and "test/linear/rmse" in final
    for record in results["test"]:
        assert set(record["before"]) >= {"rmse", "pearson", "ccc", "arousal_ccc", "valence_rmse"}
        assert record["after"]["rmse"] != record["before"]["rmse"]  # the personalized model predicts differently
    assert final["best_step"] in (2, 4)
    assert final["validation/after/rmse"] > 0
    assert (out / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    best = json.loads((out / "best" / "config.json").read_text())
    assert best["window_steps"] == 12 and best["adaptation_steps"] == 2  # the inner loop travels with the model


@pytest.mark.slow
def test_resumed_run_ends_bit_identical(run, tmp_path):
    out, _ = run
    resumed = tmp_path / "resumed"
    with one_thread():
        train(tiny(resumed, max_steps=2))
        assert (resumed / "checkpoints" / "step_000002").is_dir()
        train(tiny(resumed, max_steps=4))  # picks up checkpoints/step_000002 by itself
    a, b = parameters(out / "last"), parameters(resumed / "last")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    full = (out / "metrics.jsonl").read_text().splitlines()
    again = (resumed / "metrics.jsonl").read_text().splitlines()
    strip = lambda lines: [{k: v for k, v in json.loads(x).items() if "per_second" not in k} for x in lines]  # noqa: E731
    assert strip(again) == strip(full)


def test_resume_refuses_a_different_task_stream(run, tmp_path):
    out, _ = run
    other = tmp_path / "other"
    shutil.copytree(out / "checkpoints", other / "checkpoints")
    with pytest.raises(TaskError, match=r"differs from this run's in \['query_songs'\]"):
        train(tiny(other, query_songs=3, max_steps=6))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_process_run(cache, tmp_path: Path, output_dir: Path, *extra: str) -> str:
    """The README's multi-process command (gloo on CPU) on the tiny config; its stdout."""
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "DSAML_CACHE": str(cache)}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--main_process_port", str(_free_port()), "-m", "dsaml.cli", "train", "--config", "synthetic_tiny",
           "--output_dir", str(output_dir), "--no_progress", *extra]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    if proc.returncode != 0:  # show the process that failed first, not only the other rank's broken barrier
        lines = proc.stderr.splitlines()
        first = [line for line in lines if "[rank1]" in line or "Error" in line][:60]
        pytest.fail("the 2-process run failed:\n" + "\n".join(first + ["..."] + lines[-30:]))
    return proc.stdout


def _largest_difference(a: Path, b: Path) -> float:
    x, y = parameters(a), parameters(b)
    assert x.keys() == y.keys()
    return max(float((x[k] - y[k]).abs().max()) for k in x)


@pytest.mark.slow
def test_two_cpu_processes_match_one(run, cache, tmp_path):
    """The README's multi-process command (gloo on CPU) gives every tensor of the 1-process run."""
    out, _ = run
    two = tmp_path / "two"
    stdout = _two_process_run(cache, tmp_path, two)
    assert "test (" in stdout and "after  personalization" in stdout
    lines = stdout.splitlines()
    assert [line.split(" |")[0] for line in lines if line.startswith("step ")] == ["step 2", "step 4"]  # main only
    worst = _largest_difference(out / "last", two / "last")
    assert worst < 1e-6, worst  # observed: 0.0 (the same sums in the same order)
    a = parameters(out / "last")
    assert any(not torch.equal(a[k], parameters(out / "checkpoints" / "step_000002")[k]) for k in a)


@pytest.mark.slow
def test_two_cpu_processes_fit_the_average_readout_as_one(run, cache, tmp_path):
    """With `fit_average_readout` each process sums half of the training rows and one all-reduce adds them: the
    2-process run ends where the 1-process run does."""
    one, two = tmp_path / "one", tmp_path / "two"
    with one_thread():
        train(tiny(one, init_from=str(run[0] / "best"), fit_average_readout=True, evaluate_test=False))
    stdout = _two_process_run(cache, tmp_path, two, "--init_from", str(run[0] / "best"),
                              "--set", "fit_average_readout=true", "--set", "evaluate_test=false")
    assert stdout.count("output layer refitted to the average training listener") == 1  # main process only
    worst = _largest_difference(one / "last", two / "last")
    assert worst < 1e-5, worst


def test_push_to_hub_uploads_the_exported_model(run, tmp_path, hub_uploads):
    out, _ = run
    pushed = tmp_path / "pushed"
    shutil.copytree(out, pushed)
    train(tiny(pushed, push_to_hub=True, hub_model_id="alice/dsaml-tiny"))  # already at max_steps: export + push
    assert hub_uploads.created == [{"repo_id": "alice/dsaml-tiny", "repo_type": "model", "private": False,
                                    "exist_ok": True}]
    assert [u.repo_id for u in hub_uploads.uploads] == ["alice/dsaml-tiny"]  # one commit
    uploaded = hub_uploads.files("alice/dsaml-tiny")
    local = {p.name for p in (pushed / "best").iterdir() if p.is_file()}
    assert set(uploaded) == local
    assert uploaded["model.safetensors"] == (pushed / "best" / "model.safetensors").read_bytes()
    assert b"hf_dummy_test_token" not in b"".join(uploaded.values())
    for path in pushed.rglob("*"):
        if path.is_file():
            assert b"hf_dummy_test_token" not in path.read_bytes(), path


def test_configuration_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match=r"unknown training argument\(s\) \['tasks'\]"):
        load_arguments("synthetic_tiny", {"tasks": 3})
    with pytest.raises(ValueError, match="fp16"):
        load_arguments("synthetic_tiny", {"mixed_precision": "fp16"})
    with pytest.raises(ValueError, match="never test"):
        load_arguments("synthetic_tiny", {"select_metric": "test/after/ccc"})
    with pytest.raises(ValueError, match="push_to_hub needs hub_model_id"):
        load_arguments("synthetic_tiny", {"push_to_hub": True})
    with pytest.raises(ValueError, match="calibrate_adaptation personalizes validation listeners"):
        load_arguments("synthetic_tiny", {"calibrate_adaptation": True, "data_config": "dmer"})
    with pytest.raises(FileNotFoundError, match="synthetic_small"):
        load_arguments("no_such_config")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ValueError, match="must be a YAML mapping"):
        load_arguments(bad)


def test_command_line_overrides():
    ns = build_parser().parse_args(["--config", "synthetic_tiny", "--max_steps", "9", "--set", "tasks_per_step=4",
                                    "--set", "model.adaptation_lr=0.1", "--set", "learning_rate=2e-4",
                                    "--resume_from_checkpoint", "none"])
    args = load_arguments(ns.config, parse_overrides(ns))
    assert (args.max_steps, args.tasks_per_step, args.learning_rate) == (9, 4, 2e-4)
    assert args.resume_from_checkpoint is None
    assert args.model["adaptation_lr"] == 0.1 and args.model["hidden_size"] == 32  # merged, not replaced


def test_shipped_configs_load():
    for name in ("synthetic_small", "synthetic_long", "synthetic_tiny", "deam_pdmer", "deam_dmer", "vgmidi"):
        args = load_arguments(name)
        assert args.max_steps >= 1
    long = [a for _, a in load_arguments("synthetic_long").stage_arguments()]
    assert [(a.data_config, a.algorithm, a.max_steps) for a in long] == [
        ("dmer", "plain", 300), ("pdmer_flat", "fomaml", 200), ("pdmer_flat", "fomaml", 1000)]
    assert long[2].model["adaptation_method"] == "ridge" and long[2].model["readout_cues"]
    official = load_arguments("deam_pdmer")
    assert (official.tasks_per_step, official.query_songs, official.learning_rate) == (16, 15, 5e-5)


@pytest.mark.slow
def test_meta_training_makes_one_song_personalization_lower_the_query_rmse(cache, tmp_path):
    """On the synthetic set, after meta-training (the README's synthetic_small recipe, shortened, on the tiny
    set), adapting to a held-out listener from ONE of their songs lowers the RMSE on their other songs."""
    args = load_arguments("synthetic_small", {
        "dataset": "synthetic:tiny", "output_dir": str(tmp_path / "run"), "progress": False, "report_to": [],
        "max_steps": 100, "tasks_per_step": 2, "query_songs": 3, "validation_every": 100, "checkpoint_every": 100,
        "validation_annotators": 1, "validation_max_query_songs": 3, "test_max_query_songs": 4})
    assert args.model["adapted_parameters"] == ["predictor.dense", "predictor.out"]
    with one_thread():
        final = train(args)
    assert final["test/annotators"] == 2  # held-out listeners, never meta-trained on
    assert final["test/after/rmse"] < final["test/before/rmse"] - 0.05
    assert final["test/after/ccc"] > final["test/before/ccc"]


def test_stages_chain_output_folders_and_initialization():
    args = load_arguments("synthetic_tiny", {"output_dir": "runs/x", "push_to_hub": True, "hub_model_id": "a/b",
                                             "stages": [{"name": "pretrain", "data_config": "dmer", "algorithm": "plain",
                                                         "max_steps": 3, "model": {"adaptation_steps": 1}},
                                                        {"name": "meta"}]})
    (first_name, first), (second_name, second) = args.stage_arguments()
    assert (first_name, second_name) == ("pretrain", "meta")
    assert first.output_dir == str(Path("runs/x/stages/pretrain")) and second.output_dir == "runs/x"
    assert first.init_from is None and second.init_from == str(Path("runs/x/stages/pretrain/best"))
    assert (first.algorithm, first.max_steps, first.data_config) == ("plain", 3, "dmer")
    assert (second.algorithm, second.max_steps) == ("fomaml", 4)  # the run's own values
    assert first.model["adaptation_steps"] == 1 and first.model["hidden_size"] == 32  # merged
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


def _interrupting(monkeypatch, at_step: int, signals: int) -> None:
    """Send `signals` SIGINTs to this process in the middle of outer step `at_step` (after its gradient)."""
    import dsaml.training.loop

    real_apply = dsaml.training.loop.apply_meta_gradient
    state = {"calls": 0}

    def apply_then_interrupt(model, grads, accelerator=None):
        state["calls"] += 1
        if state["calls"] == at_step:
            for _ in range(signals):
                os.kill(os.getpid(), signal.SIGINT)
        return real_apply(model, grads, accelerator)

    monkeypatch.setattr(dsaml.training.loop, "apply_meta_gradient", apply_then_interrupt)


@pytest.mark.slow
@pytest.mark.parametrize("signals,saved", [(1, "step_000003"), (2, "step_000002")])
def test_ctrl_c_stops_at_a_step_boundary_and_resumes_exactly(run, tmp_path, monkeypatch, signals, saved):
    """One Ctrl-C in the middle of step 3 finishes that step and checkpoints it; a second one stops at once
    (the step is lost, checkpoint 2 stands). Either way the rerun ends bit-identical to the uninterrupted run,
    even with a torn last line in metrics.jsonl."""
    out, _ = run
    again = tmp_path / "again"
    with one_thread():
        _interrupting(monkeypatch, at_step=3, signals=signals)
        with pytest.raises(KeyboardInterrupt):
            train(tiny(again))
        monkeypatch.undo()
        assert sorted(p.name for p in (again / "checkpoints").iterdir())[-1] == saved
        steps = [json.loads(line)["step"] for line in (again / "metrics.jsonl").read_text().splitlines()]
        assert steps == ([1, 2, 3] if signals == 1 else [1, 2])
        with (again / "metrics.jsonl").open("a") as f:
            f.write('{"step": 4, "train/que')  # a run killed while appending
        train(tiny(again))
    a, b = parameters(out / "last"), parameters(again / "last")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda lines: [{k: v for k, v in json.loads(x).items() if "per_second" not in k} for x in lines]  # noqa: E731
    assert strip((again / "metrics.jsonl").read_text().splitlines()) == strip(
        (out / "metrics.jsonl").read_text().splitlines())


def test_a_stage_that_learns_the_ridge_settings_adds_trains_saves_and_logs_them(run, tmp_path):
    """A stage that turns `learn_adaptation_ridge` on, from a saved model without it: the settings start at the
    config's values, move at `ridge_learning_rate`, are logged each step, and travel with the saved model."""
    from dsaml.modeling import DSAMLForDynamicEmotionRecognition

    out = tmp_path / "ridge"
    model = {"adaptation_method": "ridge", "adaptation_ridge": 0.1, "adaptation_level_share": 0.5,
             "adapted_parameters": ["predictor.out"], "learn_adaptation_ridge": True}
    with one_thread():
        train(tiny(out, init_from=str(run[0] / "best"), model=model, ridge_learning_rate=0.5, max_steps=2,
                   evaluate_test=False))
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

    args = tiny(tmp_path / "average", init_from=str(run[0] / "best"), fit_average_readout=True,
                average_readout_ridge=0.01, evaluate_test=False)
    with one_thread():
        started = setup(args)
    assert "output layer refitted to the average training listener (RMSE on the training rows: arousal" \
        in capsys.readouterr().out
    validation = {t.annotator for t in started.data.validation_tasks}
    rows = started.data.training_rows()
    assert validation and not validation & {started.data.train.rows[i]["annotator"] for i in rows}
    by_hand = DSAMLForDynamicEmotionRecognition.from_pretrained(run[0] / "best", dtype=torch.float32)
    fit_average_readout(by_hand, started.data.train, rows, by_hand.config.window_steps, 0.01)
    for name in ("weight", "bias"):
        fitted = getattr(started.model.predictor.out, name)
        assert torch.allclose(fitted, getattr(by_hand.predictor.out, name), atol=1e-6)
        assert not torch.allclose(fitted, parameters(run[0] / "best")[f"predictor.out.{name}"], atol=1e-3)
    # resumed from a checkpoint, the stage keeps the checkpoint's layer: it refits once, at its first start
    with one_thread():
        first = train(tiny(tmp_path / "average", init_from=str(run[0] / "best"), fit_average_readout=True,
                           average_readout_ridge=0.01, evaluate_test=False, max_steps=2))
        capsys.readouterr()
        resumed = setup(tiny(tmp_path / "average", init_from=str(run[0] / "best"), fit_average_readout=True,
                             average_readout_ridge=0.01, evaluate_test=False, max_steps=4))
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
    from dsaml.modeling import DSAMLForDynamicEmotionRecognition
    from dsaml.training.calibration import calibrate_share
    from dsaml.training.model_setup import build_model
    from dsaml.training.run import setup

    out = tmp_path / "calibrated"
    args = tiny(out, init_from=str(run[0] / "best"), calibrate_adaptation=True, max_steps=2, evaluate_test=False,
                model={"adapted_parameters": ["predictor.dense", "predictor.out"]})
    with one_thread():
        final = train(args)
    assert "adaptation share (validation listeners): arousal" in capsys.readouterr().out
    saved = DSAMLForDynamicEmotionRecognition.from_pretrained(out / "best")
    share = saved.config.adaptation_share
    assert share == [final["calibration/arousal/share"], final["calibration/valence/share"]]
    for dim in ("arousal", "valence"):  # the final report scores the validation listeners with the share
        assert final[f"validation/after/{dim}_rmse"] == pytest.approx(final[f"calibration/{dim}/rmse_calibrated"],
                                                                      abs=1e-5)
    with one_thread():
        started = setup(args)  # resumes at its last step: the run's own validation tasks
        assert list(calibrate_share(saved, started.data.validation, started.data.final_validation_tasks)[0]) == share
        again = train(args)
    assert [again["calibration/arousal/share"], again["calibration/valence/share"]] == share
    saved.config.adaptation_share = [0.3, 0.4]
    saved.save_pretrained(tmp_path / "shrunk")
    assert build_model(tiny(tmp_path / "next", init_from=str(tmp_path / "shrunk"))).config.adaptation_share == [1.0, 1.0]


def test_a_ridge_stage_calibrates_the_reaction_lag_with_the_share(run, tmp_path, capsys):
    """With the ridge refit the calibration also chooses the longest reaction lag (`DELAY_GRID`), saves it in
    best/'s config, and the final report scores the validation listeners with it; a run started from that model
    fits no lag until it is calibrated again."""
    from dsaml.modeling import DSAMLForDynamicEmotionRecognition
    from dsaml.training.model_setup import build_model

    out = tmp_path / "lagged"
    args = tiny(out, init_from=str(run[0] / "best"), calibrate_adaptation=True, max_steps=1, evaluate_test=False,
                model={"adaptation_method": "ridge", "adapted_parameters": ["predictor.out"]})
    with one_thread():
        final = train(args)
    printed = capsys.readouterr().out
    saved = DSAMLForDynamicEmotionRecognition.from_pretrained(out / "best")
    lag = saved.config.adaptation_max_delay
    assert lag == final["calibration/max_delay"]
    scores = {d: final[f"calibration/lag_{d}/rmse"] for d in (0, 2, 4, 6)}
    assert scores[lag] == min(scores.values())
    assert f"reaction lag up to {lag} steps" in printed
    for dim in ("arousal", "valence"):
        assert final[f"validation/after/{dim}_rmse"] == pytest.approx(final[f"calibration/{dim}/rmse_calibrated"],
                                                                      abs=1e-5)
    saved.config.adaptation_max_delay = 4
    saved.save_pretrained(tmp_path / "with_lag")
    assert build_model(tiny(tmp_path / "next", init_from=str(tmp_path / "with_lag"))).config.adaptation_max_delay == 0
