"""The model card template (top-level model_card.md, packaged) and `write_model_card`."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest
import torch
from conftest import small_config
from huggingface_hub import ModelCard

from dsaml.adaptation.config import PersonalizationConfig
from dsaml.training.model_card import metrics_table, template, write_model_card

ROOT = Path(__file__).resolve().parents[1]

METRICS = {
    "validation/before/ccc": 0.1234,
    "validation/after/ccc": 0.3456,
    "validation/after/rmse": 0.2,
    "test/before/rmse": 0.25,
    "test/after/rmse": 0.2,
    "test/after/ccc": 0.41,
    "train_loss": 0.5,
    "test/annotators": 6,
}


def test_template_is_single_sourced_and_packaged():
    packaged = resources.files("dsaml.training").joinpath("model_card.md")
    assert packaged.read_text(encoding="utf-8") == (ROOT / "model_card.md").read_text(encoding="utf-8")
    link = ROOT / "src" / "dsaml" / "training" / "model_card.md"
    assert link.is_symlink() and not Path(link.readlink()).is_absolute()
    text = template()
    for section in ("## Intended use", "### Out-of-scope use", "## Data and licences", "## Training protocol",
                    "## Evaluation", "## Limitations", "## How to personalize", "## Citation"):
        assert section in text
    assert "non-commercial" in text and "2412.19200" in text
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"training/model_card.md"' in pyproject


def test_write_model_card_fills_everything(tmp_path):
    config = small_config()
    path = write_model_card(tmp_path / "best", config=config, recipe=PersonalizationConfig(), metrics=METRICS,
                            training_args={"meta_algorithm": "fomaml", "outer_lr": 1e-4, "tasks_per_step": 16},
                            dataset="deam")
    assert path == tmp_path / "best" / "README.md"
    text = path.read_text()
    assert not re.search(r"\{\{\s*\w+\s*\}\}", text), "unfilled placeholder"
    card = ModelCard.load(path)
    data = card.data.to_dict()
    assert data["license"] == "other" and data["license_name"] == "non-commercial-research"
    assert data["datasets"] == ["deam"] and "music-emotion-recognition" in data["tags"]
    results = {(r["dataset"]["split"], m["type"]): m["value"]
               for r in data["model-index"][0]["results"] for m in r["metrics"]}
    assert results[("test", "ccc")] == pytest.approx(0.41) and results[("validation", "ccc")] == pytest.approx(0.3456)
    # metrics table grouped by prefix, before/after as columns
    assert "**validation**" in text and "**test**" in text
    assert re.search(r"\| ccc \| 0\.1234 \| 0\.3456 \|", text)
    assert "| `meta_algorithm` | fomaml |" in text
    assert "- annotators: 6" in text and "| train_loss | 0.5000 |" in text
    assert "16 first-order SGD steps, learning rate 0.005" in text


def test_card_names_the_ridge_inner_loop_and_its_learned_settings(tmp_path):
    """The ridge inner loop is described as such; meta-learned settings are read from the saved weights."""
    from dsaml.modeling import DSAMLForDynamicEmotionRecognition

    ridge = PersonalizationConfig(method="ridge", ridge_strength=0.1, adapted_parameters=["predictor.out"])
    fixed = write_model_card(tmp_path / "fixed", config=small_config(), recipe=ridge, metrics={}, training_args={},
                             dataset="synthetic:small").read_text()
    assert "refitted in closed form by ridge regression" in fixed and "(strength 0.1, share of the support " \
        "song's level 1.0)" in fixed and "SGD" not in fixed.split("## Training protocol")[1].split("\n- Loss")[0]
    config = small_config(learn_adaptation_ridge=True)
    model = DSAMLForDynamicEmotionRecognition(config)
    with torch.no_grad():
        model.predictor.ridge.reset(1.0, 0.25)
        model.predictor.ridge.log_strength.copy_(torch.tensor([2.0, 0.5]).log())
    model.save_pretrained(tmp_path / "learned")
    learned = write_model_card(tmp_path / "learned", config=config, recipe=ridge, metrics={}, training_args={},
                               dataset="synthetic:small").read_text()
    assert ("meta-learned per dimension (arousal / valence): pull 2 / 0.5, share of the support song's level "
            "0.25 / 0.25") in learned and "with it, the listener's reaction lag" not in learned
    lagged = write_model_card(tmp_path / "lagged", config=small_config(), recipe=ridge.replace(max_delay=4),
                              metrics={}, training_args={}, dataset="synthetic:small").read_text()
    assert "level 1.0); with it, the listener's reaction lag (0 to 4 steps of 0.5 s, the one that fits" in lagged


def test_synthetic_card_is_apache_and_metrics_table_handles_any_keys(tmp_path):
    path = write_model_card(tmp_path, config=small_config(), recipe=PersonalizationConfig(), metrics={}, training_args={}, dataset="synthetic:small")
    data = ModelCard.load(path).data.to_dict()
    assert data["license"] == "apache-2.0" and "model-index" not in data
    assert "No metrics were recorded" in path.read_text()
    table = metrics_table({"loss": 1.0, "val/rmse": 0.5, "a/b/c/d": 0.25})
    assert "**metrics**" in table and "**val**" in table and "| d | 0.2500 |" in table
