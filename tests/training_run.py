"""What the training tests share: the tiny config, one torch thread, saved tensors, and the reference run."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dsaml.training.arguments import TrainingArguments
from dsaml.training.config_files import load_arguments
from dsaml.training.loop import train


@pytest.fixture(scope="session")
def cache(dsaml_cache, synthetic_tiny):
    """The session's synthetic cache (the tiny set builds once), also for subprocesses."""
    return dsaml_cache


def tiny(output_dir: Path, **overrides) -> TrainingArguments:
    return load_arguments("synthetic_tiny", {"output_dir": str(output_dir), "progress": False, **overrides})


@contextmanager
def one_thread():
    """Runs compared across process counts use one thread each: a different intra-op split changes float
    rounding, which Adam's normalization amplifies in near-zero gradient components."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def parameters(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a saved model: weights and the normalization statistics."""
    return load_file(str(folder / "model.safetensors"))


@pytest.fixture(scope="session")
def run(cache, tmp_path_factory):
    """The reference run: 4 outer steps, validation and checkpoints every 2."""
    out = tmp_path_factory.mktemp("run") / "full"
    with one_thread():
        final = train(tiny(out))
    return out, final


