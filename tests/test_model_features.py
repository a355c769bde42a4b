"""What the model reads beside the log-mel patches, and how it normalizes: the harmonic view, the read-out cues,
the fixed statistics of the local CNN and the temporal CNN."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import small_config
from test_modeling import features

from dsaml import DSAMLForDynamicEmotionRecognition


def _triad(root_midi: int, third: int, seconds: float = 2.0, rate: int = 44100):
    t = np.arange(int(seconds * rate)) / rate
    notes = [root_midi, root_midi + third, root_midi + 7]
    return sum(np.sin(2 * np.pi * 440.0 * 2 ** ((n - 69) / 12) * t) for n in notes).astype(np.float32) / 3


def test_harmonic_view_tells_major_from_minor():
    from dsaml.modeling import DSAMLFeatureExtractor

    extractor = DSAMLFeatureExtractor(return_harmonic_features=True)
    batch = extractor([_triad(60, 4), _triad(57, 3), _triad(66, 4), _triad(63, 3)], sampling_rate=44100)
    harmonic = batch["harmonic_features"]  # C major, A minor, F# major, D# minor
    assert harmonic.shape == (4, 4, 38)
    torch.testing.assert_close(harmonic[..., :12].sum(-1), torch.ones(4, 4), rtol=0, atol=1e-4)
    major, minor = harmonic[..., 12:24], harmonic[..., 24:36]
    assert (major[0].argmax(-1) == 0).all() and major[0].max() > minor[0].max() + 0.15  # C (pitch class 0) major
    assert (minor[1].argmax(-1) == 9).all() and minor[1].max() > major[1].max() + 0.15  # A (pitch class 9) minor
    # the quality in any key: best major minus best minor similarity, positive for major chords only
    torch.testing.assert_close(harmonic[..., 36], major.amax(-1))
    quality = harmonic[..., 36] - harmonic[..., 37]
    assert (quality[[0, 2]] > 0.15).all() and (quality[[1, 3]] < -0.15).all()
    assert "harmonic_features" not in DSAMLFeatureExtractor()([_triad(60, 4)], sampling_rate=44100)


def test_readout_cues_reach_the_output_layer_and_the_inner_loop_can_flip_them():
    from dsaml.adaptation.config import PersonalizationConfig
    from dsaml.adaptation.inner_loop import adapt
    from dsaml.modeling.harmonic_dsaml import readout_cues

    with pytest.raises(Exception, match="readout_cues reads the harmonic view"):
        small_config(readout_cues=True)
    torch.manual_seed(0)
    model = DSAMLForDynamicEmotionRecognition(small_config(
        harmonic_features=True, readout_cues=True, loss_type="mse")).eval()
    sgd = PersonalizationConfig(adapted_parameters=["predictor.out"], steps=40, learning_rate=0.5)
    assert model.predictor.out.in_features == model.config.predictor_hidden_size + 2
    feats = torch.randn(1, 12, model.config.frames_per_step, model.config.num_mel_bins)
    harmonic = torch.rand(1, 12, 38)
    quality = readout_cues(harmonic)[..., 0] - readout_cues(harmonic)[..., 1]
    torch.testing.assert_close(readout_cues(harmonic), harmonic[..., 36:])
    hidden = torch.randn(1, 12, model.config.hidden_size)
    read = model.predictor.readout_features(hidden, None, harmonic)
    torch.testing.assert_close(read[..., -2:], harmonic[..., 36:], rtol=0, atol=0)
    torch.testing.assert_close(model.predictor(hidden, None, harmonic), model.predictor.out(read))
    with pytest.raises(ValueError, match="pass `harmonic_features`"):
        model.predictor(torch.randn(1, 12, model.config.hidden_size), None)
    # a listener whose valence follows the chord quality, inverted: the output layer learns the sign
    labels = torch.stack([torch.zeros(1, 12), -0.8 * quality], dim=-1)
    support = {"input_features": feats, "harmonic_features": harmonic, "labels": labels}
    fast = adapt(model, support, sgd)
    assert fast["predictor.out.weight"][1, -2] < model.predictor.out.weight[1, -2] - 0.05
    assert fast["predictor.out.weight"][1, -1] > model.predictor.out.weight[1, -1] + 0.05
    # the closed-form inner loop reads the cues too: with a weak pull toward the meta-learned layer one song
    # (80 steps, more than the 34 features read) sets the listener's inverted mode weights
    refit = sgd.replace(method="ridge", ridge_strength=1e-4)
    feats = torch.randn(1, 80, model.config.frames_per_step, model.config.num_mel_bins)
    harmonic = torch.rand(1, 80, 38)
    quality = readout_cues(harmonic)[..., 0] - readout_cues(harmonic)[..., 1]
    labels = torch.stack([torch.zeros(1, 80), -0.8 * quality], dim=-1)
    ridge = adapt(model, {"input_features": feats, "harmonic_features": harmonic, "labels": labels}, refit)
    major, minor = ridge["predictor.out.weight"][1, -2:]
    assert major < -0.6 and minor > 0.6, (major, minor)


def test_harmonic_features_enter_the_model_and_are_checked():
    model = DSAMLForDynamicEmotionRecognition(small_config(harmonic_features=True)).eval()
    feats = torch.randn(1, 8, model.config.frames_per_step, model.config.num_mel_bins)
    harmonic = torch.rand(1, 8, 38)
    out = model(feats, harmonic_features=harmonic).logits
    assert not torch.allclose(out, model(feats, harmonic_features=harmonic.flip(1)).logits)
    torch.testing.assert_close(model.predict_long(feats, harmonic_features=harmonic, window_steps=8), out)
    with pytest.raises(ValueError, match="pass `harmonic_features` exactly when"):
        model(feats)
    with pytest.raises(ValueError, match=r"harmonic_features must be \[batch, steps, 38\]"):
        model(feats, harmonic_features=torch.rand(1, 7, 38))


def test_global_input_norm_fixed_standardizes_each_feature_and_keeps_the_level():
    """`global_input_norm="fixed"`: `DualScaleFeatureFusion.calibrate` sets the temporal CNN's input statistics
    to each step-summary feature's mean and variance over the sample (mel means and stds, harmonic view), the
    local CNN's too, and they stay fixed through training forwards. Unlike the default LayerNorm, which is
    blind to a uniform shift of a step's values (its loudness), the fixed norm passes it on; the default keeps
    today's LayerNorm (same state-dict keys as before)."""
    from torch import nn

    from dsaml.modeling.dual_scale_features_dsaml import FixedStatisticsNorm

    assert isinstance(DSAMLForDynamicEmotionRecognition(small_config(harmonic_features=True))
                      .dsaml.features.global_encoder.input_norm, nn.LayerNorm)
    torch.manual_seed(0)
    config = small_config(harmonic_features=True, global_input_norm="fixed")
    model = DSAMLForDynamicEmotionRecognition(config)
    fusion = model.dsaml.features
    norm = fusion.global_encoder.input_norm
    assert isinstance(norm, FixedStatisticsNorm)
    patches = features(4, 16, config).flatten(0, 1) * 3.0 + 2.0
    harmonic = torch.rand(patches.shape[0], 38) * 0.5
    fusion.calibrate(patches, harmonic)
    summary = torch.cat([patches.mean(1), patches.std(1), harmonic], dim=-1)
    torch.testing.assert_close(norm.running_mean, summary.mean(0))
    torch.testing.assert_close(norm.running_var, summary.var(0, unbiased=False))
    standardized = norm(summary[None])  # weight 1, bias 0 at initialization
    assert standardized.mean(dim=(0, 1)).abs().max() < 1e-4
    assert (standardized.std(dim=(0, 1), unbiased=False) - 1).abs().max() < 2e-2
    assert model.dsaml.features.local_cnn.block1[1].num_batches_tracked.item() == 1  # the local CNN calibrated too

    model.train()
    before = {k: v.clone() for k, v in model.named_buffers()}
    model(patches[None, :10], harmonic_features=harmonic[None, :10], labels=torch.zeros(1, 10, 2)).loss.backward()
    for name, value in model.named_buffers():
        assert torch.equal(value, before[name]), name

    layer = nn.LayerNorm(summary.shape[-1])
    louder = summary + 1.5
    torch.testing.assert_close(layer(louder), layer(summary), atol=1e-4, rtol=1e-4)
    assert (norm(louder[None]) - norm(summary[None])).abs().min() > 0.01
    with pytest.raises(ValueError, match="harmonic view exactly"):
        fusion.calibrate(patches)


def test_local_cnn_normalization_is_calibrated_once_and_never_moves(config):
    """The local CNN's normalization uses fixed statistics (modeling's `FixedStatisticsBatchNorm2d`): `calibrate`
    sets them from a sample, after which train-mode forwards, a meta-gradient and a personalization leave
    every buffer as it was, and train and eval mode give the same local features."""
    from dsaml.adaptation.config import PersonalizationConfig
    from dsaml.adaptation.inner_loop import adapt
    from dsaml.data.batches import TaskBatch
    from dsaml.training.meta import task_gradient

    torch.manual_seed(0)
    model = DSAMLForDynamicEmotionRecognition(config)
    cnn = model.dsaml.features.local_cnn
    patches = features(4, 16, config).flatten(0, 1) * 2.0 + 1.0
    cnn.calibrate(patches)
    block1, norm1 = cnn.block1, cnn.block1[1]
    normalized = norm1(block1[0](patches.unsqueeze(1)))  # weight 1, bias 0 at initialization
    assert normalized.mean(dim=(0, 2, 3)).abs().max() < 1e-4
    assert (normalized.var(dim=(0, 2, 3), unbiased=False) - 1).abs().max() < 1e-2  # var / (var + eps)
    x = block1(patches.unsqueeze(1))
    normalized2 = cnn.block2[1](cnn.block2[0](x))
    assert normalized2.mean(dim=(0, 2, 3)).abs().max() < 1e-4

    buffers = {k: v.clone() for k, v in model.named_buffers()}
    model.train()
    train_out = cnn(patches[:8])
    def batch(seed):
        return {"input_features": features(1, 10, config, seed), "labels": torch.rand(1, 10, 2) * 2 - 1}
    task = TaskBatch(support=batch(1), query=batch(2))
    recipe = PersonalizationConfig(steps=2, learning_rate=0.01)
    task_gradient(model, task, algorithm="fomaml", recipe=recipe)
    adapt(model, batch(3), recipe)
    model(**batch(4))
    for name, value in model.named_buffers():
        assert torch.equal(value, buffers[name]), name
    model.eval()
    assert torch.allclose(cnn(patches[:8]), train_out, atol=1e-6)
