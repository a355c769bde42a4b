"""Careless or hostile input: user names that are paths, adapters written by two processes at once, adapters
whose base cannot be verified, colliding output names, and the one-line errors of the command line.

Every case checks the exit code, a one-line message on stderr naming the input and the problem, no traceback,
and a snapshot of the surrounding folder: nothing created, changed or removed outside the output folder asked for.
"""

from __future__ import annotations

import copy
import hashlib
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf
import torch
from conftest import tone
from untrusted import SR, changed, one_line_error, setup, snapshot  # noqa: F401  (setup: a fixture)

from dsaml import DSAMLFeatureExtractor, DSAMLForDynamicEmotionRecognition
from dsaml.cli import main as cli
from dsaml.errors import AdapterError, FolderExistsError
from dsaml.personalization.adapters import ADAPTER_INFO, known_users, load_personalized, save_lora
from dsaml.personalization.personalize import personalize_audio
from dsaml.utils.storage import folder_lock


@pytest.fixture
def work(setup, tmp_path, monkeypatch):
    """An empty working directory (the current one) inside a watched parent."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def personalize_args(setup, user: str, *extra: str, song: str = "song") -> list[str]:
    audio, csv = setup["songs"][song]
    return ["personalize", "--model", str(setup["model_dir"]), "--audio", str(audio), "--annotations", str(csv),
            f"--user={user}", *extra]


# -- 1. user names --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("user", ["../../x", "/tmp/evil", "alice/bob", "a.b", ".", "..", "", "x" * 300, "-lead",
                                  "al ice"])
def test_a_user_name_that_is_not_a_plain_name_is_refused_before_any_work(setup, work, capsys, monkeypatch, user):
    import dsaml.inference.loading

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded for an invalid user name")

    monkeypatch.setattr(dsaml.inference.loading, "load_model", no_model)
    before = snapshot(work.parent)
    assert cli(personalize_args(setup, user, "--output", "adapters")) == 1
    one_line_error(capsys, "user name", "is not allowed", "letters, digits")
    assert cli(personalize_args(setup, user, "--mode", "full")) == 1
    one_line_error(capsys, "is not allowed")
    assert changed(before, snapshot(work.parent)) == set()


def test_predict_refuses_a_user_name_that_is_a_path(setup, work, capsys):
    (work / "adapters").mkdir()
    before = snapshot(work.parent)
    assert cli(["predict", str(setup["songs"]["other"][0]), "--model", str(setup["model_dir"]),
                "--adapter_dir", "adapters", "--user", "../model", "--output", "out"]) == 1
    one_line_error(capsys, "'../model'", "is not allowed")
    assert changed(before, snapshot(work.parent)) == set()


# -- 3. whole adapters, one writer, no silent replacement ------------------------------------------------------

@pytest.mark.parametrize("mode,root", [("lora", "adapters"), ("full", "personalized")])
def test_an_existing_user_is_replaced_only_with_overwrite_and_then_whole(setup, work, capsys, mode, root):
    assert cli(personalize_args(setup, "alice", "--mode", mode)) == 0
    capsys.readouterr()
    folder = work / root / "alice"
    info_name = ADAPTER_INFO if mode == "lora" else "dsaml_personalization.json"
    assert json.loads((folder / info_name).read_text())["annotations"].endswith("song.csv")
    before = snapshot(work.parent)
    assert cli(personalize_args(setup, "alice", "--mode", mode, song="other")) == 1
    one_line_error(capsys, f"{root}/alice", "exists", "--overwrite")
    assert changed(before, snapshot(work.parent)) == set()
    assert cli(personalize_args(setup, "alice", "--mode", mode, "--overwrite", song="other")) == 0
    assert json.loads((folder / info_name).read_text())["annotations"].endswith("other.csv")
    # nothing but the user's folder and its lock; no temporary or old copy left behind
    assert sorted(p.name for p in (work / root).iterdir()) == [".alice.lock", "alice"]
    outside = {k for k in changed(before, snapshot(work.parent)) if not k.startswith(f"{work.name}/{root}")}
    assert outside == set()


def test_an_interrupted_adapter_write_leaves_the_previous_adapter_untouched(setup, tmp_path, monkeypatch):
    from peft import PeftModel

    result = personalize_audio(setup["model"], setup["extractor"], *setup["songs"]["song"], user="alice")
    save_lora(setup["model"], result, tmp_path / "adapters")
    before = snapshot(tmp_path)
    real_save = PeftModel.save_pretrained

    def save_then_die(self, directory, *args, **kwargs):
        real_save(self, directory, *args, **kwargs)  # all files written ... then the process is interrupted
        raise KeyboardInterrupt

    monkeypatch.setattr(PeftModel, "save_pretrained", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        save_lora(setup["model"], result, tmp_path / "adapters", overwrite=True)
    with pytest.raises(KeyboardInterrupt):
        save_lora(setup["model"], result.__class__(**{**result.__dict__, "user": "bob"}), tmp_path / "adapters")
    assert changed(before, snapshot(tmp_path)) == set()  # no half-written bob, alice as before
    assert known_users(tmp_path / "adapters") == ["alice"]
    with pytest.raises(FolderExistsError, match="alice.*exists"):
        save_lora(setup["model"], result, tmp_path / "adapters")


def _writer(model_dir: str, audio: str, csv: str, root: str, seed: int, rounds: int, done: str) -> None:
    """A process personalizing `alice` with its own dropout seed and saving her again and again."""
    torch.set_num_threads(1)
    model = DSAMLForDynamicEmotionRecognition.from_pretrained(model_dir).eval()
    extractor = DSAMLFeatureExtractor.from_pretrained(model_dir)
    result = personalize_audio(model, extractor, audio, csv, user="alice", seed=seed)
    mine = Path(done) / f"own{seed}"
    save_lora(model, result, mine)
    digest = hashlib.sha256((mine / "alice" / "adapter_model.safetensors").read_bytes()).hexdigest()
    (Path(done) / f"hash{seed}").write_text(digest)
    for _ in range(rounds):
        save_lora(model, result, root, overwrite=True)
    (Path(done) / f"done{seed}").write_text("ok")


def test_two_writers_and_a_reader_only_ever_see_whole_adapters(setup, tmp_path):
    root, done = tmp_path / "adapters", tmp_path / "done"
    done.mkdir()
    audio, csv = setup["songs"]["song"]
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_writer, args=(str(setup["model_dir"]), str(audio), str(csv), str(root),
                                                     seed, 12, str(done))) for seed in (1, 2)]
    for w in writers:
        w.start()
    seen, loads = [], 0
    base = DSAMLForDynamicEmotionRecognition.from_pretrained(setup["model_dir"]).eval()
    while any(w.is_alive() for w in writers):
        time.sleep(0.05)
        if not (root / "alice").is_dir():
            continue
        with folder_lock(root / "alice"):  # a consistent copy: what a reader under the lock sees
            snap = tmp_path / f"copy{len(seen)}"
            shutil.copytree(root / "alice", snap)
        info = json.loads((snap / ADAPTER_INFO).read_text())
        seen.append((info["seed"], hashlib.sha256((snap / "adapter_model.safetensors").read_bytes()).hexdigest()))
        load_personalized(None, root, "alice", model=copy.deepcopy(base))  # never torn or half-written
        loads += 1
    assert all(w.exitcode == 0 for w in writers)
    hashes = {seed: (done / f"hash{seed}").read_text() for seed in (1, 2)}
    assert hashes[1] != hashes[2]  # the two writers' adapters differ, so a mix would show
    assert loads >= 1 and all(digest == hashes[seed] for seed, digest in seen), seen
    assert sorted(p.name for p in root.iterdir()) == [".alice.lock", "alice"]


# -- 4. adapters whose base cannot be verified -----------------------------------------------------------------

def test_an_adapter_whose_base_cannot_be_verified_is_refused_unless_allowed(setup, work, capsys):
    assert cli(personalize_args(setup, "alice")) == 0
    info_path = work / "adapters" / "alice" / ADAPTER_INFO
    info = json.loads(info_path.read_text())
    predict = ["predict", str(setup["songs"]["other"][0]), "--model", str(setup["model_dir"]), "--user", "alice",
               "--output", "out", "--no_plot"]
    capsys.readouterr()
    for broken in ("missing", "{not json", json.dumps({**info, "base_fingerprint": ""})):
        info_path.unlink(missing_ok=True)
        if broken != "missing":
            info_path.write_text(broken)
        with pytest.raises(AdapterError, match="alice"):
            load_personalized(None, work / "adapters", "alice", model=setup["model"])
        assert cli(predict) == 1
        line = one_line_error(capsys, "alice")
        assert ("unreadable" in line) if broken.startswith("{not") else ("--allow_unverified_adapter" in line)
        assert not (work / "out").exists()
    info_path.write_text("{not json")
    assert cli([*predict, "--allow_unverified_adapter"]) == 1  # malformed metadata is never accepted
    info_path.write_text(json.dumps({**info, "base_fingerprint": ""}))
    assert cli([*predict, "--allow_unverified_adapter"]) == 0
    assert (work / "out" / "other.csv").is_file()


# -- 5. output names -------------------------------------------------------------------------------------------

def test_predict_writes_one_result_set_per_input_whatever_their_names(setup, work, capsys):
    inputs = work / "in"
    (inputs / "sub").mkdir(parents=True)
    wave = tone(3.0, SR, 440.0)
    for name in ("a.wav", "a_1.wav", "sub/a.flac"):
        sf.write(inputs / name, wave, SR)
    assert cli(["predict", str(inputs), "--model", str(setup["model_dir"]), "--output", "out", "--no_plot"]) == 0
    assert "wrote 3 of 3 prediction(s)" in capsys.readouterr().out
    sources = {p.stem: Path(json.loads(p.read_text())["file"]).name for p in (work / "out").glob("*.json")}
    assert sources == {"a": "a.wav", "a_1": "a_1.wav", "a_2": "a.flac"}


# -- 8. expected errors are one line, found before the work ----------------------------------------------------

def _truncated_model(setup, work) -> str:
    folder = work / "truncated"
    shutil.copytree(setup["model_dir"], folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    return str(folder)


def _empty_csv(setup, work) -> list[str]:
    (work / "empty.csv").write_text("")
    return ["personalize", "--model", str(setup["model_dir"]), "--audio", str(setup["songs"]["song"][0]),
            "--annotations", str(work / "empty.csv"), "--user", "alice"]


CASES = {
    "empty annotations": (_empty_csv, ["empty.csv", "the annotation file is empty"]),
    "truncated weights": (lambda s, w: personalize_args(s, "alice", "--model", _truncated_model(s, w)),
                          ["truncated", "model.safetensors", "cannot be read"]),
    "model path missing": (lambda s, w: personalize_args(s, "alice", "--model", "./no/such/model"),
                           ["./no/such/model", "not found"]),
    "rank 0": (lambda s, w: personalize_args(s, "alice", "--rank", "0"), ["--rank must be >= 1"]),
    "lr nan": (lambda s, w: personalize_args(s, "alice", "--lr", "nan"), ["--lr must be a finite number"]),
    "output is a file": (lambda s, w: (w / "taken").write_text("x") and personalize_args(
        s, "alice", "--output", "taken"), ["taken", "is a file"]),
    "predict output is a file": (lambda s, w: (w / "taken").write_text("x") and [
        "predict", str(s["songs"]["song"][0]), "--model", str(s["model_dir"]), "--output", "taken"],
        ["taken", "is a file"]),
    "window 0": (lambda s, w: ["predict", str(s["songs"]["song"][0]), "--model", str(s["model_dir"]),
                               "--window_steps", "0"], ["--window_steps must be >= 1"]),
    "config nan": (lambda s, w: ["train", "--config", "synthetic_tiny", "--set", "learning_rate=nan"],
                   ["learning_rate must be in (0, 10], got nan"]),
    "config typo": (lambda s, w: ["train", "--config", "synthetic_tiny", "--set", "model.hiden_size=8"],
                    ["unknown model field", "hiden_size"]),
    "config value": (lambda s, w: ["train", "--config", "synthetic_tiny", "--set", "model.hidden_size=-4"],
                     ["hidden_size must be in [1, 8192], got -4"]),
    "config missing": (lambda s, w: ["train", "--config", "no_such_config"], ["no_such_config"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_expected_errors_are_one_line_and_touch_nothing(setup, work, capsys, case):
    make, needles = CASES[case]
    argv = make(setup, work)
    before = snapshot(work.parent)
    assert cli(argv) == 1
    one_line_error(capsys, *needles)
    assert changed(before, snapshot(work.parent)) == set()


def test_the_console_script_reports_errors_in_one_line(setup, tmp_path):
    script = Path(sys.executable).with_name("dsaml")
    if not script.is_file():
        pytest.skip(f"no dsaml console script beside {sys.executable} (package not installed in this env)")
    before = snapshot(tmp_path)
    run = subprocess.run([str(script), *personalize_args(setup, "../escape", "--output", str(tmp_path / "a"))],
                         capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "DSAML_DEBUG": ""})
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip() == ("dsaml personalize: error: user name '../escape' is not allowed: use 1 to 64 "
                                  "letters, digits, '_' or '-', starting with a letter or digit")
    assert changed(before, snapshot(tmp_path)) == set()
