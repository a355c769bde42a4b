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

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from conftest import small_config, tone

from dsaml import DSAMLFeatureExtractor, DSAMLForDynamicEmotionRecognition
from dsaml.cli import main as cli
from dsaml.errors import AdapterError, FolderExistsError
from dsaml.personalization.adapters import ADAPTER_INFO, known_users, load_personalized, save_lora
from dsaml.personalization.personalize import personalize_audio
from dsaml.utils.storage import folder_lock

SR = 22050


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file and folder under `root`: (kind, size, mtime) by relative path."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        out[str(path.relative_to(root))] = ("dir" if path.is_dir() else "file", st.st_size if path.is_file() else 0,
                                            st.st_mtime_ns if path.is_file() else 0)
    return out


def changed(before: dict, after: dict) -> set[str]:
    return {k for k in set(before) | set(after) if before.get(k) != after.get(k)}


def one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A saved small model, two annotated songs, a base directory to work in."""
    root = tmp_path_factory.mktemp("untrusted")
    torch.manual_seed(0)
    model = DSAMLForDynamicEmotionRecognition(small_config(window_steps=12, inference_hop_steps=6,
                                                           adaptation_steps=3, adaptation_lr=0.05)).eval()
    extractor = DSAMLFeatureExtractor.from_model_config(model.config)
    model_dir = root / "model"
    model.save_pretrained(model_dir)
    extractor.save_pretrained(model_dir)
    songs = {}
    for name, freq, phase in (("song", 330.0, 0.0), ("other", 550.0, 2.0)):
        audio = root / f"{name}.wav"
        sf.write(audio, tone(6.0, SR, freq), SR)
        t = np.arange(12)
        pd.DataFrame({"time": 0.5 * t, "arousal": 0.5 * np.sin(t / 3 + phase),
                      "valence": 0.4 * np.cos(t / 4 + phase) - 0.2}).to_csv(root / f"{name}.csv", index=False)
        songs[name] = (audio, root / f"{name}.csv")
    return {"root": root, "model": model, "extractor": extractor, "model_dir": model_dir, "songs": songs}


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
                   ["learning_rate must be a finite number"]),
    "config typo": (lambda s, w: ["train", "--config", "synthetic_tiny", "--set", "model.hiden_size=8"],
                    ["unknown model field", "hiden_size"]),
    "config value": (lambda s, w: ["train", "--config", "synthetic_tiny", "--set", "model.hidden_size=-4"],
                     ["hidden_size must be > 0"]),
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


# -- 2. prepare --overwrite never deletes outside its folder ---------------------------------------------------

def test_prepare_overwrite_deletes_nothing_a_tampered_report_points_outside(tmp_path):
    from dsaml.datasets_scripts import build_synthetic

    out, victim = tmp_path / "data", tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    reduced = dict(num_songs=3, num_annotators=3, song_seconds=(6.0, 6.0))
    build_synthetic(out, size="tiny", **reduced)
    report = json.loads((out / "build_report.json").read_text())
    configs = list(report["configs"])
    assert configs and all((out / c).is_dir() for c in configs)
    report["configs"].update({"../victim": {}, str(victim): {}, "..": {}, "": {}})
    (out / "build_report.json").write_text(json.dumps(report))
    (out / configs[0] / "stale.txt").write_text("from the previous build")
    build_synthetic(out, size="tiny", overwrite=True, **reduced)
    assert (victim / "precious.txt").read_text() == "keep me"
    assert all((out / c).is_dir() for c in configs) and not (out / configs[0] / "stale.txt").exists()


@pytest.mark.parametrize("linked", ["audio", "pdmer_flat", "listed_in_report"])
def test_prepare_overwrite_refuses_a_symlinked_folder_and_touches_nothing(tmp_path, capsys, linked):
    """A dataset folder whose `audio/` (or a config folder) is a link to the user's music: the rebuild would copy
    into it and delete every file there that is not a song of the set. Refused before anything is written."""
    from dsaml.datasets_scripts import build_synthetic

    out, music = tmp_path / "data", tmp_path / "Music"
    build_synthetic(out, size="tiny", num_songs=3, num_annotators=3, song_seconds=(6.0, 6.0))
    music.mkdir()
    for name in ("favourite_1.mp3", "favourite_2.mp3", "notes.txt"):
        (music / name).write_bytes(name.encode() * 100)
    (music / "live").mkdir()
    (music / "live" / "encore.mp3").write_bytes(b"x" * 1000)
    name = "linked" if linked == "listed_in_report" else linked
    if linked == "listed_in_report":
        report = json.loads((out / "build_report.json").read_text())
        report["configs"]["linked"] = {}
        (out / "build_report.json").write_text(json.dumps(report))
    elif (out / name).exists():
        shutil.rmtree(out / name)
    (out / name).symlink_to(Path("..") / "Music", target_is_directory=True)
    before_music, before_out = snapshot(music), snapshot(out)
    assert cli(["prepare", "synthetic", "--size", "tiny", "--output", str(out), "--overwrite", "--quiet"]) == 1
    one_line_error(capsys, f"{out / name} is a symbolic link", "never through a link")
    assert changed(before_music, snapshot(music)) == set()
    assert changed(before_out, snapshot(out)) == set()


# -- 3. annotation files of any size or shape: refused with bounded memory and time ----------------------------

ANNOTATION_BOMBS = {  # just under the size limit, each a different way to make a parser allocate
    "nul bytes": lambda n: b"\0" * n,
    "one long line": lambda n: b"1" * n,
    "a million columns": lambda n: b",".join([b"time"] * 1_000_000) + b"\n" + b"0" * (n - 5_000_000),
    "a million rows": lambda n: b"time,arousal,valence\n" + b"0,0,0\n" * ((n - 30) // 6),
}


def _capped(limit_bytes: int):
    """preexec_fn: the child's address space capped (memory that a parser would blow up hits the cap, not the
    machine)."""
    import resource

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    return apply


MEMORY_CAP = 4 << 30  # torch alone maps ~2.5 GB of address space; a parser reading 8 MB as data frames takes tens
STATED_LIMIT = 8 << 20  # the documented size limit of an annotation file (`dsaml.data.annotation_files.MAX_ANNOTATION_BYTES`)


@pytest.mark.parametrize("case", sorted(ANNOTATION_BOMBS))
def test_an_annotation_file_just_under_the_size_limit_is_refused_with_bounded_memory(tmp_path, case):
    path = tmp_path / "bomb.csv"
    path.write_bytes(ANNOTATION_BOMBS[case](STATED_LIMIT - 16))
    assert path.stat().st_size <= STATED_LIMIT
    code = ("import sys; from dsaml.data.annotation_files import read_annotations\n"
            "try:\n    read_annotations(sys.argv[1])\nexcept ValueError as exc:\n    print(exc)\n")
    run = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120,
                         preexec_fn=_capped(MEMORY_CAP))
    assert run.returncode == 0 and run.stderr == "", run.stderr[-2000:]
    assert run.stdout.startswith(f"{path}: "), run.stdout
    assert len(run.stdout.strip().splitlines()) == 1


def test_the_stated_annotation_size_limit_is_the_one_applied(tmp_path):
    from dsaml.data.annotation_files import MAX_ANNOTATION_BYTES, read_annotations

    assert MAX_ANNOTATION_BYTES == STATED_LIMIT
    path = tmp_path / "big.csv"
    with path.open("wb") as handle:
        handle.write(b"time,arousal,valence\n")
        handle.truncate(STATED_LIMIT + 1)
    with pytest.raises(ValueError, match=r"big\.csv: 8\.0 MiB is too large for an annotation \(at most 8 MiB"):
        read_annotations(path)


def test_a_1_gb_annotation_file_is_refused_before_the_model_loads(setup, tmp_path):
    huge = tmp_path / "x.csv"
    with huge.open("wb") as handle:
        handle.truncate(1 << 30)  # sparse: 1 GB of NUL bytes that take no disk
    audio, _ = setup["songs"]["song"]
    before = snapshot(tmp_path)
    run = subprocess.run([sys.executable, "-m", "dsaml.cli", "personalize", "--model", str(setup["model_dir"]),
                          "--audio", str(audio), "--annotations", str(huge), "--user", "u",
                          "--output", str(tmp_path / "adapters")], capture_output=True, text=True, timeout=120,
                         preexec_fn=_capped(MEMORY_CAP), env={**os.environ, "DSAML_DEBUG": ""})
    assert run.returncode == 1, run.stderr[-2000:]
    assert run.stderr.strip() == (f"dsaml personalize: error: {huge}: 1024.0 MiB is too large for an annotation (at "
                                  "most 8 MiB, 6 hours at 2 Hz)")
    assert changed(before, snapshot(tmp_path)) == set()
