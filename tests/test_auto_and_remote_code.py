"""Auto classes, remote code without the package, and the optional frozen pretrained global encoder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import small_config, tone
from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, Wav2Vec2Config, Wav2Vec2Model

from dsaml import DSAMLConfig, DSAMLFeatureExtractor, DSAMLForDynamicEmotionRecognition


def save_small_model(path):
    torch.manual_seed(0)
    model = DSAMLForDynamicEmotionRecognition(small_config()).eval()
    model.save_pretrained(path)
    DSAMLFeatureExtractor.from_model_config(model.config).save_pretrained(path)
    return model


def test_auto_classes_in_process(tmp_path):
    model = save_small_model(tmp_path)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), DSAMLConfig)
    assert isinstance(AutoFeatureExtractor.from_pretrained(tmp_path), DSAMLFeatureExtractor)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert isinstance(loaded, DSAMLForDynamicEmotionRecognition)
    x = torch.randn(1, 9, 51, 128)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x).logits, model(x).logits)
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert auto_map == {
        "AutoConfig": "configuration_dsaml.DSAMLConfig",
        "AutoModel": "modeling_dsaml.DSAMLForDynamicEmotionRecognition",
    }
    assert json.loads((tmp_path / "preprocessor_config.json").read_text())["auto_map"] == {
        "AutoFeatureExtractor": "feature_extraction_dsaml.DSAMLFeatureExtractor"
    }


REMOTE_SCRIPT = textwrap.dedent(
    """
    import importlib.abc, sys

    BLOCKED = ("dsaml", "torchaudio")

    class Block(importlib.abc.MetaPathFinder):
        # emulate a machine with torch and transformers only: no dsaml package, no torchaudio
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}")
            return None

    sys.meta_path.insert(0, Block())
    for name in BLOCKED:  # None in sys.modules: import fails, and find_spec (availability checks) says "absent"
        sys.modules[name] = None
    import numpy as np, torch
    from transformers import AutoFeatureExtractor, AutoModel

    folder = sys.argv[1]
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    extractor = AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)
    audio = np.load(sys.argv[2])
    batch = extractor(audio, sampling_rate=16000)  # resampled to 44.1 kHz by the remote code
    with torch.no_grad():
        logits = model(**batch).logits
    loaded = [name for name in sys.modules if name.split(".")[0] in BLOCKED and sys.modules[name] is not None]
    assert not loaded, loaded
    print(type(model).__module__, type(model).__name__, type(extractor).__module__)
    np.save(sys.argv[3], logits.numpy())
    np.save(sys.argv[4], batch["input_features"].numpy())
    """
)


@pytest.mark.slow
def test_remote_code_loads_without_the_package_or_torchaudio(tmp_path):
    folder = tmp_path / "model"
    model = save_small_model(folder)
    audio = tone(6.0, sr=16000)
    import numpy as np

    np.save(tmp_path / "audio.npy", audio)
    script = tmp_path / "load.py"
    script.write_text(REMOTE_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # the parent's thread count: BLAS rounds differently with another one (OMP_NUM_THREADS=1 in the environment
    # and 2 threads here made the logits differ by 1e-8)
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS=str(torch.get_num_threads()))
    outputs = [str(tmp_path / "logits.npy"), str(tmp_path / "features.npy")]
    result = subprocess.run(
        [sys.executable, str(script), str(folder), str(tmp_path / "audio.npy"), *outputs],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    module, name, extractor_module = result.stdout.split()
    assert module.startswith("transformers_modules") and name == "DSAMLForDynamicEmotionRecognition"
    assert extractor_module.startswith("transformers_modules")
    extractor = DSAMLFeatureExtractor.from_model_config(model.config)
    inputs = extractor(audio, sampling_rate=16000)
    assert inputs["input_features"].shape == (1, 12, 51, 128)
    assert np.array_equal(np.load(outputs[1]), inputs["input_features"].numpy())
    with torch.no_grad():
        expected = model(**inputs).logits.numpy()
    assert np.array_equal(np.load(outputs[0]), expected)


def test_frozen_pretrained_global_encoder(tmp_path):
    torch.manual_seed(0)
    encoder_config = Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 4), num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2, do_stable_layer_norm=True, feat_extract_norm="layer",
    )
    Wav2Vec2Model(encoder_config).save_pretrained(tmp_path / "encoder")
    model = DSAMLForDynamicEmotionRecognition.from_global_encoder_pretrained(
        str(tmp_path / "encoder"), global_context_seconds=2.0, global_encoder_stride_steps=2,
        global_encoder_sampling_rate=8000, **{k: v for k, v in small_config().to_diff_dict().items()
                                             if k in {"hidden_size", "num_attention_heads", "num_hidden_layers",
                                                      "intermediate_size", "lstm_hidden_size", "predictor_hidden_size"}},
    )
    encoder = model.dsaml.features.global_encoder.encoder
    reference = Wav2Vec2Model.from_pretrained(tmp_path / "encoder")
    assert all(torch.equal(a, b) for a, b in zip(encoder.state_dict().values(), reference.state_dict().values()))
    assert not any(p.requires_grad for p in encoder.parameters())

    extractor = DSAMLFeatureExtractor.from_model_config(model.config)
    assert extractor.return_global_waveform
    batch = extractor([tone(3.0), tone(2.0, freq=220)], sampling_rate=44100)
    model.train()
    assert not encoder.training  # frozen encoder stays in eval mode while DSAML trains
    out = model(**batch, labels=torch.zeros(2, 6, 2))
    out.loss.backward()
    assert all(p.grad is None for p in encoder.parameters())
    assert model.dsaml.features.global_encoder.projection.weight.grad is not None

    model.eval()
    with torch.no_grad():
        before = model(**batch).logits
    model.save_pretrained(tmp_path / "dsaml")
    loaded = DSAMLForDynamicEmotionRecognition.from_pretrained(tmp_path / "dsaml").eval()
    with torch.no_grad():
        # equal up to float rounding: the frozen encoder's SDPA kernels may pick another summation order
        torch.testing.assert_close(loaded(**batch).logits, before, atol=1e-6, rtol=1e-5)
