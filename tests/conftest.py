"""Shared fixtures: small DSAML configs and models that run in milliseconds on a CPU."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from sizes import SMALL

from dsaml import DSAMLConfig, DSAMLFeatureExtractor, DSAMLForDynamicEmotionRecognition
from dsaml.adaptation.config import PersonalizationConfig

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def small_config(**overrides) -> DSAMLConfig:
    return DSAMLConfig(**{**SMALL, **overrides})


def with_recipe(model, **recipe):
    """`model` with a `PersonalizationConfig` of `recipe` attached, as dsaml's loading and training attach it."""
    model.personalization_config = PersonalizationConfig(**recipe)
    return model


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


@pytest.fixture(scope="session")
def dsaml_cache(tmp_path_factory):
    """One dsaml cache for the whole session (`$DSAML_CACHE`, also seen by subprocesses): the synthetic sets
    build once, whichever module asks first."""
    path = tmp_path_factory.mktemp("dsaml_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DSAML_CACHE", str(path))
        yield path


@pytest.fixture(scope="session")
def synthetic_tiny(dsaml_cache) -> Path:
    """The `tiny` synthetic set through the public entry point (built once per session)."""
    from dsaml.data.datasets import dataset_root

    return dataset_root("synthetic:tiny")


@pytest.fixture(scope="session")
def trained_tiny(synthetic_tiny, tmp_path_factory) -> Path:
    """A small model plainly fitted on the tiny set's train listeners, saved with its feature extractor: the one
    trained model the evaluation, personalization and prediction round trips share (meta-training itself is
    tested in test_train.py and test_meta.py)."""
    from dsaml.data.batches import task_batch
    from dsaml.data.datasets import annotator_songs, load_pdmer
    from dsaml.data.song_store import SongStore
    from dsaml.data.tasks import TaskSampler
    from dsaml.training.meta import apply_meta_gradient, meta_gradient

    torch.manual_seed(0)
    config = small_config(window_steps=20, inference_hop_steps=10)
    model = with_recipe(DSAMLForDynamicEmotionRecognition(config), steps=4, learning_rate=0.05)
    rows = load_pdmer(synthetic_tiny, "pdmer_flat", split="train")
    store = SongStore(rows, synthetic_tiny, config)
    sampler = TaskSampler(annotator_songs(rows), support_songs=1, query_songs=3, tasks_per_step=2, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(60):
        tasks = [task_batch(store, task, config.window_steps) for task in sampler.sample(step)]
        grads, _ = meta_gradient(model, tasks, algorithm="plain")
        optimizer.zero_grad()
        apply_meta_gradient(model, grads)
        optimizer.step()
    folder = tmp_path_factory.mktemp("trained") / "model"
    model.eval().save_pretrained(folder)
    model.personalization_config.save_pretrained(folder)
    DSAMLFeatureExtractor.from_model_config(config).save_pretrained(folder)
    return folder


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


# The fake Hub of the end-to-end round trip (`hub`), and Hub uploads recorded at the HfApi boundary (`hub_uploads`).
from hub_fixtures import hub  # noqa: E402,F401
from hub_mocks import hub_uploads  # noqa: E402,F401

# The training tests' reference run, shared by test_train.py and test_training_stages.py (one run per session).
from training_run import cache, run  # noqa: E402,F401
