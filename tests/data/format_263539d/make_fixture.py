"""Writes this folder's old-format model, adapter and expected outputs. It runs with dsaml as of commit 263539d
(the last version that kept the personalization recipe in config.json), installed apart from the checkout:

    git archive 263539d | tar -x -C /tmp/dsaml-263539d
    pip install --no-deps --target /tmp/dsaml-263539d-site /tmp/dsaml-263539d
    PYTHONPATH=/tmp/dsaml-263539d-site python tests/data/format_263539d/make_fixture.py

`tests/test_old_format.py` loads what it writes with today's dsaml and expects the same numbers (to 1e-6).
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import torch

from dsaml import DSAMLConfig, DSAMLFeatureExtractor, DSAMLForDynamicEmotionRecognition
from dsaml.adapters import save_lora
from dsaml.personalize import personalize_audio
from dsaml.predict import predict_file

HERE = Path(__file__).resolve().parent
RATE = 11025


def chords(seconds: float) -> np.ndarray:
    """Alternating major and minor triads, one per second, with a little noise."""
    t = np.arange(int(seconds * RATE)) / RATE
    wave = np.zeros_like(t)
    for second in range(int(seconds)):
        root, third = 57 + (second % 3) * 2, 4 if second % 2 else 3
        part = (t >= second) & (t < second + 1)
        for note in (root, root + third, root + 7):
            wave[part] += np.sin(2 * np.pi * 440.0 * 2 ** ((note - 69) / 12) * t[part])
    noise = np.random.default_rng(0).standard_normal(t.size)
    return (0.2 * wave / 3 + 0.005 * noise).astype(np.float32)


def main() -> None:
    torch.manual_seed(0)
    config = DSAMLConfig(hidden_size=16, num_attention_heads=2, num_hidden_layers=1, intermediate_size=16,
                         lstm_hidden_size=8, predictor_hidden_size=8, global_cnn_channels=8,
                         global_context_seconds=2.0, window_steps=8, inference_hop_steps=4, local_context_steps=2,
                         global_context_steps=4, harmonic_features=True, readout_cues=True,
                         learn_adaptation_ridge=True, adaptation_method="ridge", adaptation_ridge=0.1,
                         adapted_parameters=["predictor.out"], adaptation_share=[0.9, 0.95], adaptation_max_delay=2)
    model = DSAMLForDynamicEmotionRecognition(config).eval()
    with torch.no_grad():  # learned settings away from their starting values, so loading them is what is tested
        model.predictor.ridge.log_strength.copy_(torch.tensor([0.4, -1.2]))
        model.predictor.ridge.level_logit.copy_(torch.tensor([0.8, -0.5]))
    extractor = DSAMLFeatureExtractor.from_model_config(config)
    model.save_pretrained(HERE / "model")
    extractor.save_pretrained(HERE / "model")
    for code in (HERE / "model").glob("*_dsaml.py"):  # that version's remote code: dsaml loads with its own classes
        code.unlink()
    sf.write(HERE / "song.wav", chords(6.0), RATE, subtype="PCM_16")
    steps = np.arange(12)
    pd.DataFrame({"time": 0.5 * steps, "arousal": 0.6 * np.sin(steps / 2.0),
                  "valence": 0.5 * np.cos(steps / 3.0) - 0.1}).to_csv(HERE / "song.csv", index=False)
    result = personalize_audio(model, extractor, HERE / "song.wav", HERE / "song.csv", user="alice")
    save_lora(model, result, HERE / "adapters", base_name_or_path="model")
    info_path = HERE / "adapters" / "alice" / "dsaml_adapter.json"  # this version recorded absolute paths:
    info = json.loads(info_path.read_text())  # the file names stand in for them, so no machine path is committed
    info.update(audio="song.wav", annotations="song.csv")
    info_path.write_text(json.dumps(info, indent=2))
    expected = {
        "base": predict_file(model, extractor, HERE / "song.wav")[["arousal", "valence"]].to_numpy().tolist(),
        "personalized": predict_file(result.model, extractor, HERE / "song.wav")[["arousal", "valence"]]
        .to_numpy().tolist(),
        "delay_steps": result.info["delay_steps"],
        "shrinkage": result.info["shrinkage"],
        "support_loss_after": result.support_loss_after,
    }
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")


if __name__ == "__main__":
    main()
