"""The training loop end to end on the tiny synthetic set: outputs, exact resume, 2 processes = 1 process,
configuration errors, and the Hub push through the path users run (against the local fake Hub)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from training_run import one_thread, parameters, tiny

from dsaml.commands.train import build_parser, parse_overrides
from dsaml.errors import TaskError
from dsaml.training.config_files import load_arguments
from dsaml.training.loop import train

ROOT = Path(__file__).resolve().parents[1]


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
    # the final report: each listener over REPORT_SUPPORT_REPEATS (4) support songs
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
    recipe = json.loads((out / "best" / "personalization_config.json").read_text())
    assert best["window_steps"] == 12 and recipe["steps"] == 2  # the inner loop travels with the model
    assert not any(key.startswith("adaptation_") for key in best)  # and stays out of the architecture config


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
    with pytest.raises(ValueError, match=r"model: adaptation_steps moved to `personalization:` as steps"):
        load_arguments("synthetic_tiny", {"model": {"adaptation_steps": 3}})
    with pytest.raises(ValueError, match=r"personalization config: unknown setting\(s\) \['stpes'\]"):
        load_arguments("synthetic_tiny", {"personalization": {"stpes": 3}})
    with pytest.raises(ValueError, match=r"max_steps must be in \[1, 10000000\], got 0"):
        load_arguments("synthetic_tiny", {"max_steps": 0})


def test_command_line_overrides():
    ns = build_parser().parse_args(["--config", "synthetic_tiny", "--max_steps", "9", "--set", "tasks_per_step=4",
                                    "--set", "personalization.learning_rate=0.1", "--set", "learning_rate=2e-4",
                                    "--resume_from_checkpoint", "none"])
    args = load_arguments(ns.config, parse_overrides(ns))
    assert (args.max_steps, args.tasks_per_step, args.learning_rate) == (9, 4, 2e-4)
    assert args.resume_from_checkpoint is None
    assert args.personalization == {"steps": 2, "learning_rate": 0.1}  # merged, not replaced
    assert args.model["hidden_size"] == 32


def test_shipped_configs_load():
    for name in ("synthetic_small", "synthetic_long", "synthetic_tiny", "deam_pdmer", "deam_dmer", "vgmidi"):
        args = load_arguments(name)
        assert args.max_steps >= 1
    long = [a for _, a in load_arguments("synthetic_long").stage_arguments()]
    assert [(a.data_config, a.algorithm, a.max_steps) for a in long] == [
        ("dmer", "plain", 300), ("pdmer_flat", "fomaml", 200), ("pdmer_flat", "fomaml", 1000)]
    assert long[2].personalization_config().method == "ridge" and long[2].model["readout_cues"]
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
    assert args.personalization["adapted_parameters"] == ["predictor.dense", "predictor.out"]
    with one_thread():
        final = train(args)
    assert final["test/annotators"] == 2  # held-out listeners, never meta-trained on
    assert final["test/after/rmse"] < final["test/before/rmse"] - 0.05
    assert final["test/after/ccc"] > final["test/before/ccc"]


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
