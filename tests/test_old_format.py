"""Folders written before the personalization recipe left the architecture config still load and behave the same.

`tests/data/format_263539d` holds a tiny model folder and a LoRA adapter written by dsaml at 263539d (the recipe
in `config.json`: the ridge refit with learned settings, shares 0.90 / 0.95, lags up to 2 steps), a song, its
annotation and the outputs that version computed (`make_fixture.py` says how). Today's dsaml must read the
recipe from the old `config.json`, predict and personalize the same to 1e-6, apply the old adapter, and write the
folder back in the new format.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dsaml.adaptation.config import PERSONALIZATION_CONFIG_NAME, PersonalizationConfig
from dsaml.inference.files import predict_file
from dsaml.inference.loading import load_extractor, load_model
from dsaml.personalization.adapters import load_personalized
from dsaml.personalization.personalize import personalize_audio
from dsaml.training.checkpoints import export_model

OLD = Path(__file__).resolve().parent / "data" / "format_263539d"


@pytest.fixture(scope="module")
def expected() -> dict:
    return json.loads((OLD / "expected.json").read_text())


def _curves(model, extractor) -> np.ndarray:
    return predict_file(model, extractor, OLD / "song.wav")[["arousal", "valence"]].to_numpy()


def test_the_recipe_is_read_from_an_old_config_and_predictions_are_unchanged(expected):
    model = load_model(OLD / "model")
    assert model.personalization_config == PersonalizationConfig(
        method="ridge", steps=16, learning_rate=0.005, adapted_parameters=["predictor.out"], ridge_strength=0.1,
        level_share=1.0, share=[0.9, 0.95], max_delay=2)
    assert not any(key.startswith("adaptation_") for key in model.config.to_dict())
    np.testing.assert_allclose(_curves(model, load_extractor(OLD / "model", model.config)), expected["base"],
                               atol=1e-6)


def test_personalizing_with_an_old_folder_gives_what_that_version_gave(expected):
    model = load_model(OLD / "model")
    extractor = load_extractor(OLD / "model", model.config)
    result = personalize_audio(model, extractor, OLD / "song.wav", OLD / "song.csv", user="alice")
    assert result.info["shrinkage"] == expected["shrinkage"] and result.info["delay_steps"] == expected["delay_steps"]
    assert result.support_loss_after == pytest.approx(expected["support_loss_after"], abs=1e-6)
    np.testing.assert_allclose(_curves(result.model, extractor), expected["personalized"], atol=1e-6)


def test_an_old_adapter_applies_to_its_old_base(expected):
    personal = load_personalized(OLD / "model", OLD / "adapters", "alice")
    extractor = load_extractor(OLD / "model", load_model(OLD / "model").config)
    np.testing.assert_allclose(_curves(personal, extractor), expected["personalized"], atol=1e-6)


def test_an_old_folder_saved_again_is_written_in_the_new_format(tmp_path, expected):
    model = load_model(OLD / "model")
    extractor = load_extractor(OLD / "model", model.config)
    export_model(model, extractor, tmp_path / "again")
    config = json.loads((tmp_path / "again" / "config.json").read_text())
    assert not any(key.startswith("adaptation_") for key in config) and config["learn_adaptation_ridge"]
    recipe = json.loads((tmp_path / "again" / PERSONALIZATION_CONFIG_NAME).read_text())
    assert recipe["share"] == [0.9, 0.95] and recipe["max_delay"] == 2
    again = load_model(tmp_path / "again")
    assert again.personalization_config == model.personalization_config
    np.testing.assert_allclose(_curves(again, extractor), expected["base"], atol=1e-6)
