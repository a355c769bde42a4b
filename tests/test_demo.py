"""`dsaml demo`: the page's work (songs, live annotation, personalizing through the CLI's code path) and the page
itself, driven in a real headless Chromium (the system's, through Playwright) against `dsaml demo` in its own
process, with every request the browser makes and every connection the server opens recorded."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from dsaml.data.annotation_files import read_annotations
from dsaml.demo.songs import DEMO_SONGS, SECONDS, render_demo_song
from dsaml.errors import AnnotationError

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
TARGET_AROUSAL = 0.8  # the live annotation holds arousal here: far above what the base model predicts


def _rms_db(path: Path) -> float:
    wave, _ = sf.read(path, dtype="float32")
    return float(20 * np.log10(np.sqrt(np.mean(wave.astype(np.float64) ** 2))))


def test_demo_songs_render_once_and_differ_where_the_model_listens(tmp_path):
    paths = {song.key: render_demo_song(song.key, tmp_path) for song in DEMO_SONGS}
    for path in paths.values():
        info = sf.info(path)
        assert abs(info.frames / info.samplerate - SECONDS) < 0.01
    stamp = paths["calm_minor"].stat().st_mtime_ns
    assert render_demo_song("calm_minor", tmp_path).stat().st_mtime_ns == stamp  # not rendered again
    assert _rms_db(paths["bright_major"]) - _rms_db(paths["calm_minor"]) > 10  # loud vs quiet, by design
    with pytest.raises(ValueError, match="unknown demo song 'nope'"):
        render_demo_song("nope", tmp_path)


@pytest.fixture(scope="module")
def demo_model(trained_tiny, tmp_path_factory) -> Path:
    """The session's trained tiny model with the README main job model's inner loop (the output layer refitted
    by ridge regression on the support song), which a held annotation such as arousal +0.8 moves at once."""
    from dsaml import DSAMLFeatureExtractor, DSAMLForDynamicEmotionRecognition
    from dsaml.adaptation.config import PersonalizationConfig

    folder = tmp_path_factory.mktemp("demo_model") / "model"
    DSAMLForDynamicEmotionRecognition.from_pretrained(trained_tiny).save_pretrained(folder)
    PersonalizationConfig(method="ridge", ridge_strength=0.1, adapted_parameters=["predictor.out"]).save_pretrained(
        folder)
    DSAMLFeatureExtractor.from_pretrained(trained_tiny).save_pretrained(folder)
    return folder


@pytest.fixture
def session(demo_model, tmp_path):
    from dsaml.demo.session import DemoSession

    return DemoSession(str(demo_model), tmp_path / "adapters", tmp_path / "work")


def test_live_annotation_becomes_a_personalize_csv_and_bad_ones_are_refused(session):
    song = session.demo_song("slow_build")
    values = [None, None] + [[0.8, -0.25]] * 10
    path = session.live_annotation(json.dumps({"song": song.song_id, "values": values}), song)
    curve = read_annotations(path)  # the reader of `dsaml personalize`
    assert curve["start_seconds"] == 1.0 and np.allclose(curve["arousal"], 0.8) and np.allclose(curve["valence"], -0.25)
    with pytest.raises(AnnotationError, match="no live annotation of 'A slow build"):
        session.live_annotation(json.dumps({"song": song.song_id, "values": [None] * 5}), song)
    with pytest.raises(AnnotationError, match="no live annotation"):  # the samples of another song
        session.live_annotation(json.dumps({"song": "demo-calm_minor", "values": values}), song)
    with pytest.raises(AnnotationError, match=r"misses 3 half-second step\(s\) between 0 s and 2 s \(the first at 0.5 s\)"):
        session.live_annotation(json.dumps({"song": song.song_id, "values": [[0, 0], None, None, None, [0, 0]]}), song)
    with pytest.raises(AnnotationError, match="cannot be read"):
        session.live_annotation("{not json", song)


def test_demo_saves_the_same_adapter_as_dsaml_personalize(session, demo_model, tmp_path):
    """One code path: the demo's personalization and the CLI's give the same adapter files for the same input."""
    from safetensors.torch import load_file

    from dsaml.commands.personalize import main as personalize_main
    from dsaml.errors import FolderExistsError, UserNameError

    song = session.demo_song("calm_minor")
    steps = int(SECONDS / 0.5)
    csv = tmp_path / "alice.csv"
    pd.DataFrame({"time": 0.5 * np.arange(steps), "arousal": TARGET_AROUSAL, "valence": -0.5}).to_csv(csv, index=False)
    result, folder = session.personalize(song, csv, "alice")
    assert folder == tmp_path / "adapters" / "alice" and result.support_loss_after < result.support_loss_before
    code = personalize_main(["--model", str(demo_model), "--audio", str(song.path), "--annotations", str(csv),
                             "--user", "alice", "--output", str(tmp_path / "cli")])
    assert code == 0
    demo_tensors = load_file(folder / "adapter_model.safetensors")
    cli_tensors = load_file(tmp_path / "cli" / "alice" / "adapter_model.safetensors")
    assert demo_tensors.keys() == cli_tensors.keys()
    assert all(np.array_equal(demo_tensors[k].numpy(), cli_tensors[k].numpy()) for k in demo_tensors)
    info = json.loads((folder / "dsaml_adapter.json").read_text())
    assert info["base_fingerprint"] == json.loads((tmp_path / "cli" / "alice" / "dsaml_adapter.json").read_text())[
        "base_fingerprint"]
    # the CLI's refusals, before any work
    with pytest.raises(FolderExistsError, match="the adapter of user 'alice' exists"):
        session.personalize(song, csv, "alice")
    with pytest.raises(UserNameError, match="user name 'a b' is not allowed"):
        session.personalize(song, csv, "a b")
    # the personal curve moved toward the annotation, on another song too
    other = session.demo_song("bright_major")
    base, personal = session.curves(other), session.curves(other, "alice")
    assert np.abs(personal["arousal"] - TARGET_AROUSAL).mean() < np.abs(base["arousal"] - TARGET_AROUSAL).mean()


def test_demo_command_refuses_bad_options_in_one_line(tmp_path, capsys):
    from dsaml.commands.demo import main

    assert main(["--model", "x", "--port", "0"]) == 1
    assert capsys.readouterr().err.strip() == "dsaml demo: error: --port must be between 1 and 65535, got 0"
    assert main(["--model", str(tmp_path / "missing"), "--adapter_dir", str(tmp_path / "a"), "--port", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("dsaml demo: error:") and "missing" in err and "\n" not in err
    assert not list(tmp_path.iterdir())  # nothing written
