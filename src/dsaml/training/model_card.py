"""Write a trained model's README.md from the package's model card template (`model_card.md`).

The template is single-sourced: the repository's top-level `model_card.md`, shipped inside the package as
`dsaml/model_card.md` (a symlink in the source tree) and read with `importlib.resources`. `write_model_card`
fills its `{{ field }}` placeholders from the run's config, metrics and training arguments and renders the YAML
metadata with `huggingface_hub.ModelCardData` (license, tags, datasets, metrics, model-index).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

from dsaml.adaptation.config import PersonalizationConfig

__all__ = ["dataset_license", "metrics_table", "render_model_card", "template", "write_model_card"]

_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
NON_COMMERCIAL = ("deam", "pmemo")


def template() -> str:
    """The model card template (`model_card.md`)."""
    return resources.files("dsaml.training").joinpath("model_card.md").read_text(encoding="utf-8")


def dataset_license(dataset: str) -> str:
    """The weights' licence implied by the training data: DEAM / PMEmo are non-commercial research data."""
    name = dataset.lower()
    if any(n in name for n in NON_COMMERCIAL):
        return "other"  # with license_name / license_link below: non-commercial research only
    return "apache-2.0"


def _format(value) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e9:
        return str(int(value))
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def metrics_table(metrics: Mapping[str, float]) -> str:
    """Markdown tables of flat metrics, grouped by prefix: `validation/before/ccc` -> table `validation`,
    row `ccc`, column `before`. Keys without a slash go to a `metrics` table."""
    if not metrics:
        return "_No metrics were recorded for this run._"
    groups: dict[str, dict[str, dict[str, float]]] = {}
    for key, value in metrics.items():
        parts = key.split("/")
        if len(parts) >= 3:
            group, column, row = parts[0], "/".join(parts[1:-1]), parts[-1]
        elif len(parts) == 2:
            group, column, row = parts[0], "value", parts[1]
        else:
            group, column, row = "metrics", "value", parts[0]
        groups.setdefault(group, {}).setdefault(row, {})[column] = value
    blocks = []
    for group, rows in groups.items():
        # rows with a single plain value (counts, best step) go below the table when the group has a table
        plain = {r: c["value"] for r, c in rows.items() if set(c) == {"value"}}
        table = {r: c for r, c in rows.items() if r not in plain} or {r: {"value": v} for r, v in plain.items()}
        if len(table) == len(rows):
            plain = {}
        columns: list[str] = []
        for cells in table.values():
            columns += [c for c in cells if c not in columns]
        lines = [f"**{group}**", "", "| metric | " + " | ".join(columns) + " |",
                 "|---|" + "---|" * len(columns)]
        for row, cells in table.items():
            lines.append(f"| {row} | " + " | ".join(_format(cells[c]) if c in cells else "" for c in columns) + " |")
        if plain:
            lines += [""] + [f"- {row}: {_format(value)}" for row, value in plain.items()]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _args_table(training_args: Mapping) -> str:
    if not training_args:
        return "_not recorded_"
    lines = ["| argument | value |", "|---|---|"]
    for key in sorted(training_args):
        value = str(training_args[key]).replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{key}` | {value[:120]} |")
    return "\n".join(lines)


def _card_data(config, metrics: Mapping[str, float], dataset: str, model_name: str):
    from huggingface_hub import EvalResult, ModelCardData

    license_ = dataset_license(dataset)
    extra = {}
    if license_ == "other":
        extra = {"license_name": "non-commercial-research",
                 "license_link": "https://cvml.unige.ch/databases/DEAM/"}
    eval_results = []
    for key, value in metrics.items():  # model-index: test (else validation) scores after personalization
        parts = key.split("/")
        if len(parts) == 3 and parts[0] in ("test", "validation") and parts[1] == "after" \
                and parts[2] in ("rmse", "pearson", "ccc", "arousal_ccc", "valence_ccc") \
                and isinstance(value, (int, float)) and math.isfinite(value):
            eval_results.append(EvalResult(
                task_type="audio-classification", task_name="Personalized dynamic music emotion recognition",
                dataset_type=dataset, dataset_name=dataset, dataset_split=parts[0],
                metric_type=parts[2], metric_name=f"{parts[2]} after personalization ({parts[0]})",
                metric_value=float(value)))
    data = ModelCardData(
        license=license_,
        library_name="transformers",
        pipeline_tag="audio-classification",
        tags=["music-emotion-recognition", "dynamic-emotion", "arousal-valence", "meta-learning", "dsaml",
              "personalization", "custom_code"],
        datasets=[dataset],
        metrics=["rmse", "pearsonr", "ccc"],
        model_name=model_name,
        eval_results=eval_results or None,
        **extra,
    )
    return data


def inner_loop_text(config, recipe: PersonalizationConfig, ridge: Mapping[str, Sequence[float]] | None = None) -> str:
    """The personalization the model was meta-trained with, in a sentence; `ridge` holds the meta-learned
    settings (`strength`, `level_share`: arousal, valence) when the model has them."""
    if recipe.method != "ridge":
        return f"{recipe.steps} first-order SGD steps, learning rate {recipe.learning_rate}, in train mode"
    text = ("the output layer refitted in closed form by ridge regression on the support song, pulled toward the "
            "meta-learned layer")
    lag = (f"; with it, the listener's reaction lag (0 to {recipe.max_delay} steps of "
           f"{config.step_seconds:g} s, the one that fits the song best)" if recipe.max_delay else "")
    if ridge:
        (sa, sv), (aa, av) = ridge["strength"], ridge["level_share"]
        return (f"{text}; its settings were meta-learned per dimension (arousal / valence): pull {sa:.3g} / "
                f"{sv:.3g}, share of the support song's level {aa:.2f} / {av:.2f}{lag}")
    return f"{text} (strength {recipe.ridge_strength}, share of the support song's level {recipe.level_share}){lag}"


def render_model_card(*, config, recipe: PersonalizationConfig, metrics: Mapping[str, float], training_args: Mapping,
                      dataset: str,
                      model_name: str = "dsaml", model_id: str = "path/to/model",
                      num_parameters: int | None = None, ridge: Mapping[str, Sequence[float]] | None = None) -> str:
    """The filled template as a string (YAML metadata included)."""
    data = _card_data(config, metrics, dataset, model_name)
    value_range = training_args.get("value_range") or "[-1, 1]"
    values = {
        "card_data": data.to_yaml(),
        "model_name": model_name,
        "model_id": model_id,
        "dataset": dataset,
        "license": dataset_license(dataset) if dataset_license(dataset) != "other" else "non-commercial research only",
        "step_seconds": config.step_seconds,
        "window_steps": config.window_steps,
        "window_seconds": f"{config.window_steps * config.step_seconds:g}",
        "local_context_steps": config.local_context_steps,
        "global_context_steps": config.global_context_steps,
        "num_hidden_layers": config.num_hidden_layers,
        "hidden_size": config.hidden_size,
        "global_encoder": config.global_encoder,
        "sampling_rate": config.sampling_rate,
        "value_range": value_range,
        "inner_loop": inner_loop_text(config, recipe, ridge),
        "adapted_parameters": ", ".join(f"`{p}`" for p in recipe.adapted_parameters) or "all parameters",
        "loss_type": config.loss_type,
        "diagonal_loss_weight": config.diagonal_loss_weight,
        "num_parameters": f"{num_parameters:,}" if num_parameters else "see config.json",
        "training_args_table": _args_table(training_args),
        "metrics_table": metrics_table(metrics),
    }

    def fill(match: re.Match) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"model_card.md uses an unknown placeholder {{{{ {key} }}}}")
        return str(values[key])

    return _PLACEHOLDER.sub(fill, template())


def write_model_card(output_dir, *, config, recipe: PersonalizationConfig, metrics, training_args, dataset) -> Path:
    """Fill the model card template from a run and write `<output_dir>/README.md`.

    Args:
        output_dir: the model folder (the card goes to its README.md, what the Hub shows).
        config: the run's `DSAMLConfig`.
        recipe: its `PersonalizationConfig`.
        metrics: flat floats, e.g. `{"validation/before/ccc": ..., "validation/after/ccc": ..., "test/after/rmse": ...}`;
            rendered as tables grouped by the first path component (rows = last component, columns = the middle).
        training_args: the training arguments (rendered as a table).
        dataset: the training dataset's name (sets the licence: DEAM / PMEmo -> non-commercial).
    Returns: the path of the written README.md.
    """
    from huggingface_hub import ModelCard

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    training_args = dict(training_args or {})
    metrics = {k: float(v) for k, v in (metrics or {}).items() if isinstance(v, (int, float))}
    num_parameters, ridge = None, None
    weights = out / "model.safetensors"
    if weights.is_file():
        try:
            from safetensors import safe_open

            with safe_open(str(weights), "pt") as f:
                num_parameters = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
                if "predictor.ridge.log_strength" in f.keys():
                    ridge = {"strength": f.get_tensor("predictor.ridge.log_strength").exp().tolist(),
                             "level_share": f.get_tensor("predictor.ridge.level_logit").sigmoid().tolist()}
        except Exception:  # noqa: BLE001 - the count is decoration, never a reason to lose the card
            num_parameters, ridge = None, None
    text = render_model_card(config=config, recipe=recipe, metrics=metrics, training_args=training_args, dataset=str(dataset),
                             model_name=out.name if out.name not in ("", ".", "best") else "dsaml",
                             model_id=str(training_args.get("hub_model_id") or "<model folder or Hub repo>"), num_parameters=num_parameters, ridge=ridge)
    card = ModelCard(text)  # validates the YAML header
    path = out / "README.md"
    card.save(str(path))
    return path
