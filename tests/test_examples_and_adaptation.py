"""Label/feature alignment, windows, batching, the inner loop and the evaluation scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tone

from dsaml.adaptation.config import PersonalizationConfig
from dsaml.adaptation.inner_loop import adapt
from dsaml.adaptation.tensors import adaptable_parameters, functional_loss
from dsaml.data.alignment import align, song_patches, window_starts, windows
from dsaml.data.batches import collate
from dsaml.errors import AnnotationError
from dsaml.evaluation.scores import curve_scores, score_songs


def aligned(extractor, seconds=40.0, start=5.0, frames=60, song_id="s1"):
    patches = song_patches(extractor, tone(seconds), 44100, song_id)
    t = np.arange(frames)
    return align(
        patches, arousal=0.5 * np.sin(t / 6), valence=0.4 * np.cos(t / 9), start_seconds=start, frame_rate=2.0,
        step_seconds=0.5, song_id=song_id, annotator="w7",
    )


def test_alignment_follows_the_reference_convention(extractor):
    patches = song_patches(extractor, tone(40.0), 44100, "s1")
    song = aligned(extractor)
    assert song.start_step == 10  # label frame 0 at 5.0 s = step 10
    assert song.num_steps == 60 and song.features.shape == (60, 51, 128)
    assert torch.equal(song.features[0], patches[10]) and torch.equal(song.features[-1], patches[69])
    assert song.labels.shape == (60, 2)
    assert song.labels[3, 0].item() == pytest.approx(0.5 * np.sin(3 / 6), abs=1e-6)


def test_alignment_errors_name_the_song_and_annotator(extractor):
    patches = song_patches(extractor, tone(20.0), 44100, "s1")
    ok = dict(start_seconds=0.0, frame_rate=2.0, step_seconds=0.5, song_id="song9", annotator="w3")
    with pytest.raises(AnnotationError, match=r"song 'song9', annotator 'w3'.*needs 35.0 s of audio but the audio has 20.0 s"):
        align(patches, arousal=np.zeros(70), valence=np.zeros(70), **ok)
    with pytest.raises(AnnotationError, match="song9.*NaN or infinite value at frame 2"):
        align(patches, arousal=[0, 0, np.nan], valence=[0, 0, 0], **ok)
    with pytest.raises(AnnotationError, match=r"values must lie in \[-1.0, 1.0\]"):
        align(patches, arousal=[0, 1.5], valence=[0, 0], **ok)
    with pytest.raises(AnnotationError, match="arousal has 3 frames but valence has 2"):
        align(patches, arousal=[0, 0, 0], valence=[0, 0], **ok)
    with pytest.raises(AnnotationError, match="frame rate 1.0 Hz"):
        align(patches, arousal=[0], valence=[0], **{**ok, "frame_rate": 1.0})
    with pytest.raises(AnnotationError, match="not a non-negative multiple"):
        align(patches, arousal=[0], valence=[0], **{**ok, "start_seconds": 0.3})
    # one trailing label past the audio's last complete step is rounding, not an error
    assert align(patches, arousal=np.zeros(41), valence=np.zeros(41), **ok).num_steps == 40


def test_windows_and_collate(extractor):
    song = aligned(extractor)
    assert window_starts(60, 60) == [0]
    assert window_starts(100, 60, 25) == [0, 25, 40]
    assert window_starts(30, 60) == [0]
    parts = windows(song, 25, 20)
    assert [p.start_step for p in parts] == [10, 30, 45]
    assert all(p.num_steps == 25 for p in parts)
    batch = collate([song, parts[0]])
    assert batch["input_features"].shape == (2, 60, 51, 128)
    assert batch["attention_mask"].sum(1).tolist() == [60, 25]
    assert torch.equal(batch["labels"][1, :25], parts[0].labels)
    assert batch["labels"][1, 25:].abs().max() == 0
    with pytest.raises(ValueError):
        collate([])


def test_adapt_lowers_support_loss_without_touching_the_model(model, extractor):
    torch.manual_seed(0)
    support = collate(windows(aligned(extractor), 30))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    start = functional_loss(model, dict(model.named_parameters()), support).item()
    fast = adapt(model, support, PersonalizationConfig(steps=8, learning_rate=5e-3))
    assert functional_loss(model, fast, support).item() < start
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())
    assert set(fast) == {n for n, p in model.named_parameters() if p.requires_grad}
    # zero steps return the meta-parameters themselves
    unchanged = adapt(model, support, PersonalizationConfig(steps=0))
    assert all(unchanged[n] is p for n, p in model.named_parameters())


def test_adapting_a_subset_by_pattern(model, extractor):
    support = collate([aligned(extractor)])
    head = adaptable_parameters(model, ["predictor.dense", "*.out.*"])
    assert set(head) == {"predictor.dense.weight", "predictor.dense.bias", "predictor.out.weight", "predictor.out.bias"}
    fast = adapt(model, support, PersonalizationConfig(steps=2, learning_rate=1e-2), params=head)
    assert set(fast) == set(head)
    assert not torch.equal(fast["predictor.out.weight"], head["predictor.out.weight"])
    with pytest.raises(ValueError, match="no trainable parameter matches"):
        adaptable_parameters(model, ["nothing.like.this"])
    assert all(n.startswith("predictor.") for n in adaptable_parameters(model, ["predictor"]))
    assert len(adaptable_parameters(model, [])) == len([p for p in model.parameters() if p.requires_grad])


def test_first_order_gradient_is_the_query_gradient_at_the_fast_weights(model, extractor):
    """FOMAML's meta-gradient: d query_loss / d theta with the inner updates treated as constants."""
    torch.manual_seed(0)
    support = collate([aligned(extractor, song_id="a")])
    query = collate([aligned(extractor, seconds=45.0, start=10.0, song_id="b")])
    model.eval()  # no dropout: both computations see the same network
    fast = adapt(model, support, PersonalizationConfig(steps=2, learning_rate=1e-2))
    loss = functional_loss(model, fast, query)
    meta_grad = torch.autograd.grad(loss, list(model.parameters()))
    detached = {n: t.detach().requires_grad_() for n, t in fast.items()}
    direct = torch.autograd.grad(functional_loss(model, detached, query), list(detached.values()))
    for a, b in zip(meta_grad, direct):
        torch.testing.assert_close(a, b)


def test_curve_scores_against_hand_computation():
    p = np.array([0.1, 0.4, 0.2, 0.8])
    t = np.array([0.0, 0.5, 0.1, 0.6])
    rmse = np.sqrt(np.mean((p - t) ** 2))
    pcc = np.corrcoef(p, t)[0, 1]
    ccc = 2 * np.cov(p, t, bias=True)[0, 1] / (p.var() + t.var() + (p.mean() - t.mean()) ** 2)
    scores = curve_scores(p, t)
    assert scores["rmse"] == pytest.approx(rmse) and scores["pearson"] == pytest.approx(pcc, abs=1e-6)
    assert scores["ccc"] == pytest.approx(ccc, abs=1e-6)
    assert curve_scores(np.full(4, 0.3), t)["pearson"] == 0.0  # undefined correlation of a flat curve
    with pytest.raises(ValueError, match="equal-length"):
        curve_scores(p, t[:3])
    songs = score_songs([np.stack([p, p], 1), np.stack([t, t], 1)], [np.stack([t, t], 1), np.stack([t, t], 1)])
    assert songs["num_songs"] == 2
    assert songs["arousal_rmse"] == pytest.approx(rmse / 2)
    assert songs["ccc"] == pytest.approx((ccc + 1.0) / 2, abs=1e-6)
