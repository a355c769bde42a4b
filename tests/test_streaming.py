"""Streaming prediction: a song decoded block by block and predicted window by window equals the whole-song
sliding windows; its window schedule, bounded buffer, cross-song batches, measured batch size, background
decoding."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import small_config, tone

from dsaml import DSAMLFeatureExtractor, DSAMLForDynamicEmotionRecognition
from dsaml.audio.blocks import file_steps
from dsaml.errors import AudioError
from dsaml.inference.batch_size import BatchSizeTuner
from dsaml.inference.files import predict_file, predict_files, predict_waveform
from dsaml.modeling.sliding_windows_dsaml import SongWindows, window_starts

SR = 22050


def song(seconds: float, sr: int = SR) -> np.ndarray:
    """A stereo test song whose pitch and loudness move (so windows predict different values)."""
    t = np.arange(int(seconds * sr)) / sr
    mono = tone(seconds, sr, 220.0) * (0.6 + 0.4 * np.sin(2 * np.pi * t / 7.0)).astype(np.float32)
    return np.stack([mono, 0.5 * mono + 0.1 * tone(seconds, sr, 330.0, seed=1)], axis=1)


def reference_sliding_windows(model, features, harmonic, window, hop) -> np.ndarray:
    """The sliding-window blend written out: every window through `forward`, Hann-tapered weights."""
    steps = features.shape[0]
    total, weight = torch.zeros(steps, 2), torch.zeros(steps, 1)
    for s in window_starts(steps, window, hop):
        n = min(window, steps)
        w = torch.hann_window(window + 2, periodic=False)[1:-1].clamp_min(1e-3)[:, None] if n == window else 1.0
        h = None if harmonic is None else harmonic[None, s : s + n]
        with torch.no_grad():
            total[s : s + n] += model(features[None, s : s + n], harmonic_features=h).logits[0] * w
        weight[s : s + n] += w
    return (total / weight).numpy()


@pytest.fixture(scope="module")
def harmonic_model():
    torch.manual_seed(0)
    model = DSAMLForDynamicEmotionRecognition(small_config(window_steps=12, harmonic_features=True,
                                                           readout_cues=True)).eval()
    with torch.no_grad():  # an untrained read-out is nearly flat; scaled, the curves move by ~0.02
        model.predictor.out.weight.mul_(30.0)
    return model, DSAMLFeatureExtractor.from_model_config(model.config)


@pytest.mark.parametrize("hop", [3, 6, 12])
def test_streamed_file_equals_whole_song_sliding_windows(tmp_path, harmonic_model, hop):
    model, extractor = harmonic_model
    path = tmp_path / "song.flac"
    sf.write(path, song(41.3), SR)  # 82 steps: 7 to 24 windows of 12, the last flush with the end
    frame = predict_file(model, extractor, path, hop_steps=hop)
    audio, rate = sf.read(path, dtype="float32")
    inputs = extractor(audio.mean(axis=1), sampling_rate=rate)  # a 2-D array would be a batch of channels
    expected = reference_sliding_windows(model, inputs["input_features"][0], inputs["harmonic_features"][0], 12, hop)
    assert len(frame) == 82 and expected.shape == (82, 2)
    got = frame[["arousal", "valence"]].to_numpy()
    assert np.abs(got - expected).max() < 1e-4
    assert got.std(axis=0).min() > 1e-3  # the curve moves: the comparison is not of constants


def test_window_schedule_matches_window_starts_for_any_arrival():
    rng = np.random.default_rng(0)
    for steps, window, hop in [(1, 5, 2), (5, 5, 2), (6, 5, 2), (7, 5, 2), (30, 12, 6), (31, 12, 5), (40, 12, 12),
                               (100, 20, 3), (11, 12, 4)]:
        windows, seen, arrived = SongWindows(window, hop), [], 0
        while arrived < steps:
            count = min(int(rng.integers(1, 9)), steps - arrived)
            seen += [(s, window) for s in windows.extend(count)]
            arrived += count
        seen += windows.finish()
        assert seen == [(s, min(window, steps)) for s in window_starts(steps, window, hop)], (steps, window, hop)


def test_steps_are_final_only_when_no_window_can_still_cover_them():
    windows = SongWindows(10, 5)
    windows.extend(12)  # window 0 scheduled, not yet added
    assert windows.pop().shape == (0, 2)
    windows.add(0, torch.ones(10, 2))
    assert windows.pop().shape == (2, 2)  # steps >= 2 may still be in the song's last window
    windows.extend(8)  # window 5 and 10 are now complete
    windows.add(5, torch.full((10, 2), 3.0))
    windows.add(10, torch.full((10, 2), 3.0))
    windows.finish()  # 20 steps: the grid window at 10 already ends at the end
    out = windows.pop()
    assert out.shape == (18, 2) and windows.done
    np.testing.assert_allclose(out[:3, 0], 1.0)  # steps 2-4: window 0 alone
    np.testing.assert_allclose(out[-5:, 0], 3.0)  # steps 15-19: window 10 alone
    assert 1.0 < float(out[5, 0]) < 3.0  # step 7: blended


def test_buffer_stays_about_one_window_on_a_long_song(harmonic_model):
    model, extractor = harmonic_model
    stream, peak = model.streaming(12, 6), 0
    handle = stream.open()
    inputs = extractor(tone(150.0, SR), sampling_rate=SR)  # 300 steps
    for first in range(0, 300, 7):
        stream.push(handle, {name: inputs[name][0, first : first + 7]
                             for name in ("input_features", "harmonic_features")})
        peak = max(peak, handle.buffer["local"].shape[0])
    stream.finish(handle)
    stream.flush()
    assert stream.pop(handle).shape == (300, 2) and handle.windows.done
    assert peak <= 12 + 6 + 7  # a window, a hop and the block just pushed, not the song


def test_windows_of_several_songs_batched_equal_one_at_a_time(harmonic_model):
    model, extractor = harmonic_model
    lengths = [40, 9, 25, 9, 12, 61]  # shorter than a window (two of equal length), exactly one, several
    songs = [extractor(tone(n / 2 + 0.2, SR, 200.0 + 40 * i), sampling_rate=SR) for i, n in enumerate(lengths)]
    outputs = {}
    for batch in (1, 4):
        runs = []
        stream = model.streaming(12, 5, batch_size=batch, on_batch=lambda n, s: runs.append(n))
        handles = [stream.open() for _ in songs]
        for handle, inputs in zip(handles, songs):
            stream.push(handle, {name: inputs[name][0] for name in ("input_features", "harmonic_features")})
            stream.finish(handle)
        stream.flush()
        outputs[batch] = [stream.pop(h) for h in handles]
        assert max(runs) == batch
    for n, one, many in zip(lengths, outputs[1], outputs[4]):
        assert one.shape == (n, 2)
        torch.testing.assert_close(many, one, rtol=0, atol=1e-5)


def test_batch_size_tuner_keeps_the_fastest_per_window():
    tuner = BatchSizeTuner(candidates=(1, 2, 4), rounds=2)
    per_window = {1: 1.0, 2: 0.6, 4: 0.58}  # 4 saves under 5 % over 2: the smaller one is kept
    asked = []
    while tuner.chosen is None:
        size = tuner.size()
        asked.append(size)
        tuner.record(size - 1 if size > 1 and len(asked) == 3 else size, per_window[size] * size)  # one short run
    assert asked[0] == 1 and sorted(set(asked)) == [1, 2, 4]
    assert tuner.chosen == 2 and tuner.size() == 2
    assert BatchSizeTuner.choose({1: 1.0, 8: 0.5, 16: 0.52}) == 8


def test_folder_prediction_in_order_with_bad_files_named(tmp_path, harmonic_model):
    model, extractor = harmonic_model
    paths = []
    for i, seconds in enumerate([13.0, 0.2, 31.0, 8.0]):
        paths.append(tmp_path / f"s{i}.wav")
        sf.write(paths[-1], song(seconds), SR)
    paths.insert(2, tmp_path / "missing.flac")
    results = list(predict_files(model, extractor, paths, batch_size=None))
    assert [i for i, _ in results] == list(range(5))
    assert isinstance(results[1][1], AudioError) and "s1.wav" in str(results[1][1])
    assert isinstance(results[2][1], AudioError) and "missing.flac" in str(results[2][1])
    for index in (0, 3, 4):
        alone = predict_file(model, extractor, paths[index], background=False)
        np.testing.assert_allclose(results[index][1].to_numpy(), alone.to_numpy(), rtol=0, atol=1e-5)


def test_background_decoding_stops_when_the_caller_does(tmp_path, harmonic_model):
    _, extractor = harmonic_model
    path = tmp_path / "long.wav"
    sf.write(path, song(60.0), SR)
    events = file_steps([path] * 4, extractor, block_frames=4096, queue_blocks=2)
    assert next(events)[1] == "steps"
    events.close()
    assert not any(t.name == "dsaml-decoding" for t in threading.enumerate())


def test_waveforms_in_the_wrong_layout_are_refused_by_name(harmonic_model):
    model, extractor = harmonic_model
    with pytest.raises(AudioError, match=r"take\.wav: 2-D audio must be \(channels, samples\)"):
        predict_waveform(model, extractor, song(3.0), SR, name="take.wav")  # (samples, channels)
    frame = predict_waveform(model, extractor, song(3.0).T, SR, name="take.wav")
    assert len(frame) == 6


def test_default_hop_is_half_the_window():
    from huggingface_hub.errors import StrictDataclassError

    from dsaml import DSAMLConfig

    assert DSAMLConfig().hop_steps == 30 and DSAMLConfig(window_steps=12).hop_steps == 6
    assert DSAMLConfig(window_steps=1).hop_steps == 1 and DSAMLConfig(inference_hop_steps=7).hop_steps == 7
    with pytest.raises(StrictDataclassError, match=r"inference_hop_steps must be in \[1, 3600\], got 0"):
        DSAMLConfig(inference_hop_steps=0)
