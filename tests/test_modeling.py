"""DSAML network: shapes, masking, shared weights, losses, save/load and input validation."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import small_config
from huggingface_hub.errors import StrictDataclassError

from dsaml import DSAMLConfig, DSAMLForDynamicEmotionRecognition
from dsaml.modeling.dual_scale_attention_dsaml import band_mask
from dsaml.modeling.losses_dsaml import diagonal_attention_loss, emotion_loss, sequence_scores

OFFICIAL_PARAMETERS = 29_692_723  # reference code without frozen ImageBind (README, "The method")


def features(batch: int, steps: int, config: DSAMLConfig, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, steps, config.frames_per_step, config.num_mel_bins, generator=generator) - 5.0


@pytest.mark.parametrize("batch,steps", [(1, 1), (1, 7), (3, 60), (2, 75)])
def test_output_shapes(model, config, batch, steps):
    out = model(features(batch, steps, config), output_attentions=True)
    assert out.logits.shape == (batch, steps, 2)
    assert out.arousal.shape == out.valence.shape == (batch, steps)
    assert torch.equal(out.arousal, out.logits[..., 0]) and torch.equal(out.valence, out.logits[..., 1])
    # local layers then global layers, one map per layer and pass
    assert len(out.attentions) == 2 * config.num_hidden_layers
    assert all(a.shape == (batch, config.num_attention_heads, steps, steps) for a in out.attentions)
    assert out.loss is None


def test_default_parameter_count_matches_reference():
    model = DSAMLForDynamicEmotionRecognition(DSAMLConfig())
    total = sum(p.numel() for p in model.parameters())
    global_encoder = sum(p.numel() for p in model.dsaml.features.global_encoder.parameters())
    print(f"\nDSAML default: {total:,} parameters; without the global encoder {total - global_encoder:,} "
          f"(reference code: {OFFICIAL_PARAMETERS:,})")
    assert total - global_encoder == OFFICIAL_PARAMETERS
    assert model.config.local_feature_size == 476


def test_padded_song_predicts_as_if_alone(model, config):
    """Padding must not leak: CNN BatchNorm, temporal CNN, attention keys and the BiLSTM all respect the mask."""
    model.eval()
    long, short = features(1, 40, config, seed=1), features(1, 23, config, seed=2)
    batch = torch.zeros(2, 40, *long.shape[2:])
    batch[0], batch[1, :23] = long[0], short[0]
    mask = torch.zeros(2, 40, dtype=torch.long)
    mask[0], mask[1, :23] = 1, 1
    with torch.no_grad():
        together = model(batch, attention_mask=mask).logits
        alone = model(short).logits
    torch.testing.assert_close(together[1, :23], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(together[0], model(long).logits[0].detach(), atol=1e-5, rtol=1e-5)


def test_band_masks_limit_attention(config):
    torch.manual_seed(0)
    model = DSAMLForDynamicEmotionRecognition(small_config(local_context_steps=2, global_context_steps=6)).eval()
    steps = 20
    with torch.no_grad():
        out = model(features(1, steps, config), output_attentions=True)
    layers = config.num_hidden_layers
    outside_local = ~band_mask(steps, 2)
    outside_global = ~band_mask(steps, 6)
    for maps, outside in ((out.attentions[:layers], outside_local), (out.attentions[layers:], outside_global)):
        for attention in maps:
            assert attention[..., outside].abs().max() == 0
            torch.testing.assert_close(attention.sum(-1), torch.ones_like(attention.sum(-1)))
    assert band_mask(5, 1).int().tolist() == [
        [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 0, 1, 1]
    ]


def test_local_and_global_pass_share_one_encoder(model, config):
    transformer = model.dsaml.transformer
    encoders = [m for m in transformer.modules() if type(m).__name__ == "DSAMLEncoder"]
    assert len(encoders) == 1
    calls = []
    hooks = [layer.register_forward_hook(lambda mod, i, o: calls.append(id(mod))) for layer in encoders[0].layers]
    model(features(1, 10, config))
    for hook in hooks:
        hook.remove()
    # each layer object runs twice per forward: once under the local mask, once under the global mask
    assert len(calls) == 2 * config.num_hidden_layers
    assert all(calls.count(i) == 2 for i in set(calls))
    # the global pass adds no weights of its own
    torch.manual_seed(0)
    only_local = DSAMLForDynamicEmotionRecognition(small_config(use_global_attention=False))
    assert sum(p.numel() for p in only_local.parameters()) == sum(p.numel() for p in model.parameters())
    # and the gradient of every shared weight is the sum of both passes' contributions: run each pass through its
    # own copy of the encoder, and the copies' gradients add up to the shared encoder's
    # no dropout, so the three forwards see the same function; training mode, where the passes run one by one
    # (`_pass`; in eval mode they run stacked, test_stacked_passes_at_inference_equal_the_two_passes)
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    hidden = torch.randn(1, 10, config.hidden_size)
    transformer.encoder.zero_grad()
    transformer(hidden)[0].pow(2).sum().backward()
    shared = {n: p.grad.clone() for n, p in transformer.encoder.named_parameters()}
    copies = {context: copy.deepcopy(transformer.encoder) for context in (config.local_context_steps,
                                                                           config.global_context_steps)}
    original_pass = transformer._pass
    transformer._pass = lambda h, m, context: _with_encoder(transformer, copies[context], original_pass, h, m, context)
    try:
        transformer(hidden)[0].pow(2).sum().backward()
    finally:
        del transformer._pass
    local_grads, global_grads = (dict(c.named_parameters()) for c in copies.values())
    for name, grad in shared.items():
        torch.testing.assert_close(grad, local_grads[name].grad + global_grads[name].grad, rtol=1e-5, atol=1e-7)
    query = "layers.0.attention.query.weight"
    assert local_grads[query].grad.abs().max() > 0 and global_grads[query].grad.abs().max() > 0


def _with_encoder(transformer, encoder, original_pass, hidden, mask, context):
    """`transformer._pass` with `encoder` in place of the shared one."""
    shared = transformer.encoder
    transformer.encoder = encoder
    try:
        return original_pass(hidden, mask, context)
    finally:
        transformer.encoder = shared


def test_ablation_switches(config):
    x = features(2, 12, config)
    for local, global_ in ((True, False), (False, True), (False, False)):
        torch.manual_seed(0)
        model = DSAMLForDynamicEmotionRecognition(small_config(use_local_attention=local, use_global_attention=global_))
        out = model(x, output_attentions=True, labels=torch.zeros(2, 12, 2))
        assert out.logits.shape == (2, 12, 2) and torch.isfinite(out.loss)
        assert len(out.attentions) == config.num_hidden_layers


@pytest.mark.slow
def test_loss_decreases_on_a_tiny_batch(model, config):
    torch.manual_seed(0)
    x = features(2, 30, config)
    t = torch.linspace(0, 6, 30)
    labels = torch.stack([torch.stack([0.5 * torch.sin(t), 0.4 * torch.cos(t)], -1)] * 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(40):
        out = model(x, labels=labels)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    assert out.emotion_loss is not None and out.diagonal_loss is not None
    torch.testing.assert_close(out.loss, out.emotion_loss + config.diagonal_loss_weight * out.diagonal_loss)


def test_composite_loss_values():
    t = torch.linspace(-1, 1, 20)
    target = torch.stack([t, t.flip(0)], -1)[None]
    assert emotion_loss(target, target, None, "ccc_pcc_rmse").item() == pytest.approx(0.0, abs=1e-5)
    shifted = target + 0.5  # perfect correlation, biased: PCC = 1, RMSE = 0.5, CCC < 1
    scores = sequence_scores(shifted, target)
    var = t.var(unbiased=False)
    expected_ccc = 2 * var / (2 * var + 0.25)
    torch.testing.assert_close(scores["ccc"][0], torch.stack([expected_ccc] * 2), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(scores["pcc"][0], torch.ones(2), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(scores["rmse"][0], torch.full((2,), 0.5), atol=1e-5, rtol=1e-5)
    expected = 1 - (expected_ccc + 1 + 0.5) / 3
    assert emotion_loss(shifted, target, None, "ccc_pcc_rmse").item() == pytest.approx(expected.item(), abs=1e-5)
    assert emotion_loss(shifted, target, None, "mse").item() == pytest.approx(0.25, abs=1e-6)
    # masked steps are ignored entirely
    mask = torch.ones(1, 20)
    mask[0, 10:] = 0
    garbage = shifted.clone()
    garbage[0, 10:] = 100.0
    assert emotion_loss(garbage, target, mask, "mse").item() == pytest.approx(0.25, abs=1e-6)


def test_diagonal_loss_matches_reference_definition():
    steps = 4
    local = torch.full((2, 3, steps, steps), 0.1)
    local[..., range(steps), range(steps)] = 0.7  # diagonal 0.7 vs target 0.9
    global_ = torch.full((2, 3, steps, steps), 0.2)  # diagonal 0.2 vs target 0.1
    loss = diagonal_attention_loss(local, global_, None, 0.9, 0.1)
    assert loss.item() == pytest.approx(0.2**2 + 0.1**2, abs=1e-6)


def test_save_and_load_round_trip_is_bit_identical(tmp_path, model, config):
    model.eval()
    x = features(2, 33, config)
    with torch.no_grad():
        before = model(x).logits
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert not list(tmp_path.glob("*.bin"))
    for name in ("configuration_dsaml.py", "modeling_dsaml.py", "dual_scale_attention_dsaml.py",
                 "dual_scale_features_dsaml.py", "losses_dsaml.py"):
        assert (tmp_path / name).is_file(), name
    loaded = DSAMLForDynamicEmotionRecognition.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        after = loaded(x).logits
    assert torch.equal(before, after)
    ignore = {"_name_or_path"}
    saved = {k: v for k, v in loaded.config.to_dict().items() if k not in ignore}
    assert saved == {k: v for k, v in model.config.to_dict().items() if k not in ignore}


def test_frame_feature_input():
    torch.manual_seed(0)
    config = small_config(input_type="frame_features", frame_feature_size=260)
    model = DSAMLForDynamicEmotionRecognition(config)
    out = model(torch.randn(2, 60, 260), labels=torch.zeros(2, 60, 2))
    assert out.logits.shape == (2, 60, 2) and torch.isfinite(out.loss)
    with pytest.raises(ValueError, match=r"\[batch, steps, 260\]"):
        model(torch.randn(2, 60, 51, 128))


def test_long_song_sliding_windows(model, config):
    model.eval()
    x = features(1, 150, config)
    with torch.no_grad():
        short = model.predict_long(x[:, :40], window_steps=60)
        assert torch.allclose(short, model(x[:, :40]).logits, atol=1e-6)
        # back-to-back windows reproduce per-window predictions exactly
        tiled = model.predict_long(x, window_steps=50, hop_steps=50)
        for start in (0, 50, 100):
            assert torch.allclose(tiled[:, start : start + 50], model(x[:, start : start + 50]).logits, atol=1e-6)
        overlapped = model.predict_long(x, window_steps=60, hop_steps=10)
    assert overlapped.shape == (1, 150, 2) and torch.isfinite(overlapped).all()
    # a batch of songs of different lengths: padding stays zero, each song as if alone
    mask = torch.ones(2, 150, dtype=torch.long)
    mask[1, 90:] = 0
    both = model.predict_long(torch.cat([x, x]), attention_mask=mask, window_steps=60, hop_steps=10)
    assert torch.allclose(both[0], overlapped[0], atol=1e-6)
    assert torch.allclose(both[1, :90], model.predict_long(x[:, :90], window_steps=60, hop_steps=10)[0], atol=1e-6)
    assert both[1, 90:].abs().max() == 0


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"loss_type": "huber"}, "loss_type"),
        ({"global_encoder": "imagebind"}, "global_encoder"),
        ({"hidden_size": 60, "num_attention_heads": 16}, "multiple of num_attention_heads"),
        ({"hidden_dropout_prob": 1.5}, "hidden_dropout_prob"),
        ({"local_diagonal_target": 2.0}, "local_diagonal_target"),
        ({"global_cnn_kernel_size": 4}, "odd"),
        ({"window_steps": 0}, "window_steps"),
        ({"hidden_act": "swish2"}, "hidden_act"),
        ({"global_encoder": "pretrained"}, "global_encoder_config"),
        ({"num_hidden_layers": 1_000_000}, r"num_hidden_layers must be in \[1, 48\], got 1000000"),
        ({"max_relative_positions": 10**9}, r"max_relative_positions must be in \[1, 8192\]"),
        ({"sampling_rate": 10**12}, r"sampling_rate must be in \[1000, 768000\]"),
        ({"global_context_seconds": float("inf")}, r"global_context_seconds must be in \(0, 600\], got inf"),
        ({"window_steps": 10**9}, r"window_steps must be in \[1, 3600\]"),
    ],
)
def test_invalid_config_values_raise(overrides, message):
    # transformers 5 configs are strict dataclasses: bad values fail at construction, naming the field
    with pytest.raises(StrictDataclassError, match=message):
        small_config(**overrides)


def test_bad_model_inputs_raise(model, config):
    with pytest.raises(ValueError, match="input_features must be"):
        model(torch.randn(2, 10, 128))  # missing the frame axis
    with pytest.raises(ValueError, match="input_features must be"):
        model(torch.randn(2, 10, 40, 128))  # wrong patch size
    bad = features(1, 5, config)
    bad[0, 2, 3, 4] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        model(bad)
    with pytest.raises(ValueError, match="attention_mask"):
        model(features(1, 5, config), attention_mask=torch.ones(1, 6))
    with pytest.raises(ValueError, match="labels must be"):
        model(features(1, 5, config), labels=torch.zeros(1, 5))
    labels = torch.zeros(1, 5, 2)
    labels[0, 1, 0] = float("nan")
    with pytest.raises(ValueError, match="labels contain NaN"):
        model(features(1, 5, config), labels=labels)


def test_base_model_returns_the_fused_sequence(config):
    from dsaml import DSAMLModel

    torch.manual_seed(0)
    base = DSAMLModel(config).eval()
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, 8:] = 0
    out = base(features(2, 12, config), attention_mask=mask, output_attentions=True)
    assert out.last_hidden_state.shape == out.fused_features.shape == (2, 12, config.hidden_size)
    assert out.last_hidden_state[1, 8:].abs().max() == 0
    # both passes' outputs go through sigmoid(local + global): strictly inside (0, 1) on real steps
    assert 0 < out.last_hidden_state[0].min() and out.last_hidden_state[0].max() < 1
    assert len(out.attentions) == 2 * config.num_hidden_layers
    assert len(base(features(1, 5, config), return_dict=False)) == 2  # to_tuple drops the None attentions


def test_whole_numbers_are_accepted_for_float_fields():
    # YAML and JSON users write `global_context_seconds: 10`; a strict float field must not reject it
    config = small_config(global_context_seconds=10, diagonal_loss_weight=0)
    assert config.global_context_seconds == 10 and config.diagonal_loss_weight == 0
    with pytest.raises(StrictDataclassError, match="global_context_seconds"):
        small_config(global_context_seconds="10")


def test_stacked_passes_at_inference_equal_the_two_passes(model):
    """In eval mode the local and global passes run as one batch: the same output and maps as one by one."""
    transformer = model.eval().dsaml.transformer
    cfg = transformer.config
    hidden = torch.randn(2, 30, cfg.hidden_size)
    mask = torch.ones(2, 30, dtype=torch.long)
    mask[1, 22:] = 0
    with torch.no_grad():
        out, local_maps, global_maps = transformer(hidden, mask)
        local, local_alone = transformer._pass(hidden, mask, cfg.local_context_steps)
        glob, global_alone = transformer._pass(hidden, mask, cfg.global_context_steps)
    torch.testing.assert_close(out, torch.sigmoid(local + glob), rtol=0, atol=1e-6)
    assert len(local_maps) == len(global_maps) == cfg.num_hidden_layers
    for a, b in zip(local_maps + global_maps, local_alone + global_alone):
        assert a.shape == (2, cfg.num_attention_heads, 30, 30)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert not torch.allclose(local, glob, atol=1e-3)  # the two bands differ: a swap would be caught
