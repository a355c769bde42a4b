"""`dsaml predict`: 2 Hz curves for files of any length as CSV + JSON + PNG, batches, adapters, clear errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from conftest import shared_data_dir, small_config, tone

from dsaml import DSAMLFeatureExtractor, DSAMLForDynamicEmotionRecognition
from dsaml.commands.predict import main
from dsaml.data.annotation_files import read_annotations
from dsaml.errors import AudioError
from dsaml.inference.files import predict_file

SR = 16000


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = DSAMLForDynamicEmotionRecognition(small_config(window_steps=12, inference_hop_steps=6)).eval()
    folder = tmp_path_factory.mktemp("model") / "model"
    model.save_pretrained(folder)
    DSAMLFeatureExtractor.from_model_config(model.config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def loaded(model_dir):
    model = DSAMLForDynamicEmotionRecognition.from_pretrained(str(model_dir)).eval()
    return model, DSAMLFeatureExtractor.from_pretrained(str(model_dir))


def test_predict_file_timestamps_and_length(tmp_path, loaded):
    model, extractor = loaded
    path = tmp_path / "song.wav"
    seconds = 17.3  # longer than one 6 s window: sliding windows
    sf.write(path, tone(seconds, SR), SR)
    frame = predict_file(model, extractor, path)
    assert list(frame.columns) == ["time_seconds", "arousal", "valence"]
    assert len(frame) == math.floor(seconds / 0.5) == 34
    np.testing.assert_allclose(frame["time_seconds"], 0.5 * np.arange(34))
    assert np.isfinite(frame[["arousal", "valence"]].to_numpy()).all()
    # the same as running the model on the features directly
    inputs = extractor(tone(seconds, SR), sampling_rate=SR)
    with torch.no_grad():
        direct = model.predict_long(inputs["input_features"], inputs["attention_mask"])[0].numpy()
    np.testing.assert_allclose(frame[["arousal", "valence"]].to_numpy(), direct, rtol=0, atol=1e-6)


def test_cli_writes_csv_json_png_for_a_batch(tmp_path, model_dir, capsys):
    songs = tmp_path / "songs"
    (songs / "sub").mkdir(parents=True)
    sf.write(songs / "a.wav", tone(7.3, SR, 330.0), SR)
    sf.write(songs / "sub" / "b.flac", tone(3.0, SR, 550.0), SR)
    out = tmp_path / "out"
    assert main([str(songs), "--model", str(model_dir), "--output", str(out)]) == 0
    for stem, rows in (("a", 14), ("b", 6)):
        csv = pd.read_csv(out / f"{stem}.csv")
        assert len(csv) == rows
        np.testing.assert_allclose(csv["time_seconds"], 0.5 * np.arange(rows))
        payload = json.loads((out / f"{stem}.json").read_text())
        assert payload["num_steps"] == rows and payload["step_seconds"] == 0.5
        np.testing.assert_allclose(payload["arousal"], csv["arousal"], atol=1e-6)
        png = (out / f"{stem}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    # a prediction JSON can be corrected and fed back to `dsaml personalize` as an annotation
    ann = read_annotations(out / "a.json")
    assert ann["start_seconds"] == 0.0 and len(ann["arousal"]) == 14


def test_unusable_files_are_named(tmp_path, model_dir, loaded, capsys):
    model, extractor = loaded
    short = tmp_path / "blip.wav"
    sf.write(short, tone(0.3, SR), SR)
    with pytest.raises(AudioError, match=r"blip\.wav.*shorter than one 0\.5 s step"):
        predict_file(model, extractor, short)
    broken = tmp_path / "broken.mp3"
    broken.write_bytes(b"\x00garbage" * 50)
    with pytest.raises(AudioError, match=r"broken\.mp3.*cannot decode"):
        predict_file(model, extractor, broken)
    good = tmp_path / "good.wav"
    sf.write(good, tone(2.0, SR), SR)
    # a batch keeps going past a bad file, reports it and exits non-zero
    assert main([str(good), str(broken), "--model", str(model_dir), "--output", str(tmp_path / "o"), "--no_plot"]) == 1
    assert "broken.mp3" in capsys.readouterr().err
    assert (tmp_path / "o" / "good.csv").is_file() and not (tmp_path / "o" / "good.png").exists()
    assert main([str(good), "--model", str(model_dir), "--adapter_dir", str(tmp_path / "none"), "--user", "zed",
                 "--output", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "zed" in err and "adapter folder not found" in err


@pytest.mark.shared_data
def test_predict_real_deam_clips(tmp_path, model_dir):
    data = shared_data_dir()
    folder = data / "deam" / "emoMusic1000_dev744_from_audiologic" / "audio_mp3_sample" if data else None
    if folder is None or not folder.is_dir():
        pytest.skip("shared DEAM sample clips not available")
    clips = sorted(folder.glob("*.mp3"))
    assert len(clips) == 10
    out = tmp_path / "deam"
    assert main([str(folder), "--model", str(model_dir), "--output", str(out)]) == 0
    for clip in clips:
        csv = pd.read_csv(out / f"{clip.stem}.csv")
        info = sf.info(clip)
        assert abs(len(csv) - math.floor(info.duration / 0.5)) <= 1  # MP3 header length vs decoded length
        assert (out / f"{clip.stem}.png").stat().st_size > 10_000
        assert np.isfinite(csv[["arousal", "valence"]].to_numpy()).all()
