"""The three settings classes (model config, personalization config, training arguments): every field documented,
every number bounded, the bounds applied before anything is built, and the personalization config's rules."""

from __future__ import annotations

import dataclasses
import json
import typing

import pytest

from dsaml.adaptation.config import PERSONALIZATION_CONFIG_NAME, PersonalizationConfig
from dsaml.errors import ConfigError
from dsaml.modeling import DSAMLConfig
from dsaml.training.arguments import TrainingArguments

CLASSES = (DSAMLConfig, PersonalizationConfig, TrainingArguments)


def _numeric(field: dataclasses.Field) -> bool:
    types = {t for t in typing.get_args(field.type) or (field.type,)} - {type(None)}
    inner = {a for t in types for a in (typing.get_args(t) or (t,))}  # list[int] -> int
    return bool(inner) and inner <= {int, float} and bool not in inner


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_field_has_help_and_every_number_an_upper_bound(cls):
    own = [f for f in dataclasses.fields(cls) if cls is not DSAMLConfig or f.name in cls.__annotations__]
    assert own and all(f.metadata.get("help") for f in own), [f.name for f in own if not f.metadata.get("help")]
    unbounded = [f.name for f in own if _numeric(f) and not {"maximum", "exclusive_maximum"} & set(f.metadata)]
    assert unbounded == []
    assert set(cls.help()) == {f.name for f in own}


@pytest.mark.parametrize("field,value,message", [
    ("num_hidden_layers", 1_000_000, r"num_hidden_layers must be in \[1, 48\], got 1000000"),
    ("hidden_size", 10**6, r"hidden_size must be in \[1, 8192\]"),
    ("num_mel_bins", 10**8, r"num_mel_bins must be in \[1, 512\]"),
    ("sampling_rate", 10**12, r"sampling_rate must be in \[1000, 768000\]"),
    ("global_context_seconds", float("nan"), r"global_context_seconds must be in \(0, 600\], got nan"),
])
def test_an_untrusted_model_config_is_refused_before_the_model_is_built(tmp_path, field, value, message):
    """A config.json from the Hub with an absurd size fails on load, naming the field, with nothing allocated."""
    values = DSAMLConfig().to_dict()
    values[field] = value
    (tmp_path / "config.json").write_text(json.dumps(values))
    with pytest.raises(Exception, match=message):
        DSAMLConfig.from_pretrained(tmp_path)


def test_the_personalization_rules_live_in_its_config():
    assert PersonalizationConfig().share == [1.0, 1.0]
    cases = {
        "share must be two numbers": dict(share=[1.0]),
        r"share must be in \[0, 1.5\], got \[0.5, -0.1\]": dict(share=[0.5, -0.1]),
        "differs per dimension, which needs an inner loop that adapts only": dict(share=[0.5, 1.0]),
        "the ridge refit adapts the output layer": dict(method="ridge"),
        "max_delay chooses the reaction lag with the ridge refit": dict(max_delay=2),
        r"steps must be in \[0, 1000\]": dict(steps=10**6),
    }
    for message, values in cases.items():
        with pytest.raises(ConfigError, match=message):
            PersonalizationConfig(**values)
    read_out = PersonalizationConfig(share=[0.5, 1.0], adapted_parameters=["predictor.dense", "predictor.out"])
    assert read_out.reads_out_only
    with pytest.raises(ConfigError, match="must be shorter than the model's window_steps"):
        PersonalizationConfig(method="ridge", adapted_parameters=["predictor.out"], max_delay=20).check_model(
            DSAMLConfig(window_steps=20))
    with pytest.raises(ConfigError, match="learn_adaptation_ridge"):
        PersonalizationConfig().check_model(DSAMLConfig(learn_adaptation_ridge=True))


def test_another_inner_loop_keeps_its_whole_change_and_fits_no_lag():
    recipe = PersonalizationConfig(method="ridge", adapted_parameters=["predictor.out"], share=[0.3, 0.3],
                                   max_delay=4, steps=5, learning_rate=0.1)
    assert recipe.for_inner_loop() is recipe and recipe.for_inner_loop(5, 0.1) is recipe
    other = recipe.for_inner_loop(steps=6)
    assert (other.steps, other.share, other.max_delay) == (6, [1.0, 1.0], 0)


def test_the_personalization_config_round_trips_and_refuses_bad_files(tmp_path):
    recipe = PersonalizationConfig(method="ridge", adapted_parameters=["predictor.out"], share=[0.9, 0.95],
                                   max_delay=4)
    recipe.save_pretrained(tmp_path)
    assert PersonalizationConfig.from_pretrained(tmp_path) == recipe
    (tmp_path / PERSONALIZATION_CONFIG_NAME).write_text("[1, 2]")
    with pytest.raises(ConfigError, match="must hold a JSON object, got a list"):
        PersonalizationConfig.from_pretrained(tmp_path)
    (tmp_path / PERSONALIZATION_CONFIG_NAME).write_text('{"stpes": 3}')
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) \['stpes'\]"):
        PersonalizationConfig.from_pretrained(tmp_path)
    (tmp_path / PERSONALIZATION_CONFIG_NAME).unlink()
    assert PersonalizationConfig.from_pretrained(tmp_path) == PersonalizationConfig()  # no recipe at all: defaults
