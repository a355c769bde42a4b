"""What the hostile-input tests share: folder snapshots, the one-line error check, and a saved small model with
two annotated songs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from conftest import small_config, tone, with_recipe

from dsaml import DSAMLFeatureExtractor, DSAMLForDynamicEmotionRecognition

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
    model = with_recipe(DSAMLForDynamicEmotionRecognition(small_config(window_steps=12, inference_hop_steps=6)).eval(),
                        steps=3, learning_rate=0.05)
    extractor = DSAMLFeatureExtractor.from_model_config(model.config)
    model_dir = root / "model"
    model.save_pretrained(model_dir)
    model.personalization_config.save_pretrained(model_dir)
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
