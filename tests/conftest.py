"""Shared fixtures: small DSAML configs and models that run in milliseconds on a CPU."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from dsaml import DSAMLConfig, DSAMLFeatureExtractor, DSAMLForDynamicEmotionRecognition
from sizes import SMALL

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def small_config(**overrides) -> DSAMLConfig:
    return DSAMLConfig(**{**SMALL, **overrides})


@pytest.fixture
def config() -> DSAMLConfig:
    return small_config()


@pytest.fixture
def model(config) -> DSAMLForDynamicEmotionRecognition:
    torch.manual_seed(0)
    return DSAMLForDynamicEmotionRecognition(config)


@pytest.fixture
def extractor(config) -> DSAMLFeatureExtractor:
    return DSAMLFeatureExtractor.from_model_config(config)


def tone(seconds: float, sr: int = 44100, freq: float = 440.0, seed: int = 0) -> np.ndarray:
    """A test signal: a tone with a little noise (never silent)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def shared_data_dir() -> Path | None:
    """../shared/data beside the checkout (CI clones with shared/ beside it), or $DSAML_SHARED_DATA."""
    candidates = [os.environ.get("DSAML_SHARED_DATA"), Path(__file__).resolve().parents[2] / "shared" / "data"]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


# A local fake Hugging Face Hub (tests/hub_server.py): the `hub` fixture.
from hub_fixtures import hub  # noqa: E402,F401
