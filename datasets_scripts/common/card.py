"""The dataset card (README.md): YAML metadata with the `configs:` that `datasets.load_dataset` reads, then a
description of the format, the partitions, the licence and what the build dropped."""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from dsaml.datasets_scripts.common.report import DropReport

VIEWER_MAX_SPLITS = 30  # the Hub dataset viewer shows at most this many splits of one config


@dataclass
class CardInfo:
    pretty_name: str
    summary: str  # one paragraph: what the dataset is
    source: str  # where the data comes from (markdown)
    license: str  # Hub licence id ("other" with license_name/link for research-only releases)
    license_text: str  # the licence in words, for the card body
    value_range: tuple[float, float] = (-1.0, 1.0)
    license_name: str | None = None
    license_link: str | None = None
    citation: str | None = None
    partitions: str = ""  # how train/validation/test were chosen (markdown)
    extra_sections: list[tuple[str, str]] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)


def _size_category(rows: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if rows < limit:
            return label
    return "1M<n<10M"


def _front_matter(card: CardInfo, files: dict[str, dict[str, str]], default: str | None, rows: int) -> str:
    meta: dict = {"pretty_name": card.pretty_name, "license": card.license}
    if card.license_name:
        meta["license_name"] = card.license_name
    if card.license_link:
        meta["license_link"] = card.license_link
    meta["task_categories"] = ["audio-classification"]
    meta["tags"] = ["music", "music-emotion-recognition", "valence-arousal", "personalization", "dsaml", *card.tags]
    meta["size_categories"] = [_size_category(rows)]
    meta["configs"] = [
        {
            "config_name": name,
            "data_files": [{"split": split, "path": path} for split, path in splits.items()],
            **({"default": True} if name == default else {}),
        }
        for name, splits in files.items()
    ]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000) + "---\n"


_COLUMNS = """| column | type | meaning |
|---|---|---|
| `song_id` | string | the song's id in the source release |
| `annotator` | string | the annotator's original id (`average` for averaged annotations) |
| `audio` | string | the song's audio file, relative to the dataset folder (`audio/<song_id>.<ext>`){reference} |
| `start_seconds` | float32 | time of the first label frame in the audio |
| `frame_rate` | float32 | label frames per second (2.0: one every 0.5 s) |
| `arousal`, `valence` | list<float32> | the annotation curves, same length, no NaN, values in {range} |
| `partition` | string | `train`, `validation` or `test` (see below) |
| `annotator_info` | string | JSON with what is known about the annotator (`{{}}` when nothing) |
{features}"""


def render_card(
    card: CardInfo,
    files: dict[str, dict[str, str]],
    counts: dict[str, dict[str, int]],
    default: str | None,
    report: DropReport,
    audio_mode: str,
    with_features: bool = False,
) -> str:
    """The dataset card (README.md): front matter with the configs, then the sections below."""
    rows = max((sum(s.values()) for s in counts.values()), default=0)
    parts = [_front_matter(card, files, default, rows), f"# {card.pretty_name}\n", card.summary.strip() + "\n"]
    parts.append("## Source and licence\n")
    parts.append(card.source.strip() + "\n")
    parts.append(card.license_text.strip() + "\n")
    parts += _configs_section(counts, default)
    parts += _row_format_section(card, audio_mode, with_features)
    parts += _loading_and_report_sections(card, report)
    return "\n".join(parts).rstrip() + "\n"


def _configs_section(counts: dict[str, dict[str, int]], default: str | None) -> list[str]:
    parts = ["## Configurations\n"]
    parts.append("| config | splits | rows |\n|---|---|---|")
    for name, splits in counts.items():
        shown = ", ".join(f"`{s}` ({n})" for s, n in list(splits.items())[:6])
        more = f", ... ({len(splits)} splits)" if len(splits) > 6 else ""
        parts.append(f"| `{name}`{' (default)' if name == default else ''} | {shown}{more} | {sum(splits.values())} |")
    parts.append("")
    parts.append(
        "- `dmer`: averaged annotations (`annotator` = `average`), split by song into `train` / `validation` / `test`.\n"
        "- `pdmer`: one split per annotator, named `annotator_<id>` (ids reduced to letters, digits and `_`; the\n"
        "  original id stays in the `annotator` column). Each row's `partition` says whether it belongs to\n"
        "  meta-training (`train`), to validation (`validation`, where the builder holds some out) or to the\n"
        "  held-out evaluation (`test`).\n"
        "- `pdmer_flat`: the same rows as `pdmer`, one split per `partition` (`train`, `test`, and `validation` where\n"
        "  present), for training code that groups by the `annotator` column: one split loads much faster than\n"
        "  hundreds.\n"
    )
    many = [name for name, splits in counts.items() if len(splits) > VIEWER_MAX_SPLITS]
    if many:
        parts.append(
            f"> **Dataset viewer:** the Hub viewer shows at most {VIEWER_MAX_SPLITS} splits per config; "
            f"{', '.join(f'`{m}`' for m in many)} has more. Every split still loads with `load_dataset`; "
            "browse the rows through `pdmer_flat`.\n"
        )
    return parts


def _row_format_section(card: CardInfo, audio_mode: str, with_features: bool) -> list[str]:
    """The columns, the label timing and value range, then the builder's partitions and extra sections."""
    low, high = card.value_range
    parts = ["## Row format\n"]
    reference = (
        "; in this build, an absolute path to the local release (`audio_mode=reference`): not portable"
        if audio_mode == "reference"
        else ""
    )
    features = (
        "| `features` | list<list<float32>> | precomputed per-frame features (`[frames][dims]`), aligned with the labels |\n"
        if with_features
        else ""
    )
    parts.append(_COLUMNS.format(reference=reference, range=f"[{low:g}, {high:g}]", features=features))
    parts.append(
        f"Label frame `k` covers `[start_seconds + k / frame_rate, start_seconds + (k + 1) / frame_rate)` of the "
        f"audio. **Value range: [{low:g}, {high:g}]**.\n"
    )
    if card.partitions:
        parts.append("## Partitions\n")
        parts.append(card.partitions.strip() + "\n")
    for title, text in card.extra_sections:
        parts.append(f"## {title}\n")
        parts.append(text.strip() + "\n")
    return parts


def _loading_and_report_sections(card: CardInfo, report: DropReport) -> list[str]:
    parts = ["## Loading\n"]
    parts.append(
        "```python\n"
        "from datasets import load_dataset\n\n"
        "flat = load_dataset(\"<this folder or repo>\", \"pdmer_flat\", split=\"train\")   # all annotators, one split\n"
        "one = load_dataset(\"<this folder or repo>\", \"pdmer\", split=\"annotator_<id>\")  # one annotator\n"
        "averaged = load_dataset(\"<this folder or repo>\", \"dmer\")\n"
        "```\n\n"
        "Audio is not decoded by `datasets` (no `Audio` feature: it would need torchcodec/FFmpeg). Read it with\n"
        "`dsaml.audio.reader.load_audio(dsaml.data.datasets.resolve_audio(root, row[\"audio\"]))`, where `root` is this folder\n"
        "(`dsaml.data.datasets.dataset_root(repo_id)` downloads a Hub copy).\n"
    )

    parts.append("## Build report\n")
    lines = report.summary_lines()
    parts.append(
        ("What the build left out (also in `build_report.json`, with examples):\n\n" + "\n".join(f"- {l}" for l in lines))
        if lines
        else "Nothing was dropped."
    )
    parts.append("")
    if card.citation:
        parts.append("## Citation\n")
        parts.append("```bibtex\n" + card.citation.strip() + "\n```\n")
    return parts
