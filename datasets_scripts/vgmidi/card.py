"""The VGMIDI dataset card's text: what made the audio, how listeners were paired, timed and split."""

from __future__ import annotations

from dsaml.datasets_scripts.common.card import VIEWER_MAX_SPLITS, CardInfo
from dsaml.datasets_scripts.vgmidi import measure_grid, piece_ring
from dsaml.datasets_scripts.vgmidi import release as vgmidi_release

CITATION = """@inproceedings{ferreira_ismir_2019,
  title     = {Learning to Generate Music with Sentiment},
  author    = {Ferreira, Lucas N. and Whitehead, Jim},
  booktitle = {Proceedings of the International Society for Music Information Retrieval Conference (ISMIR)},
  year      = {2019}
}"""


def _rule(module) -> str:
    """A module docstring's paragraphs after its first line: the card states the rule the code applies."""
    return (module.__doc__ or "").split("\n\n", 1)[-1].strip()


def _by_partition(counts: dict) -> str:
    return ", ".join(f"{n} {name}" + (" (left out)" if name == piece_ring.MIXED else "") for name, n in counts.items())


def _paragraph(module, start: str) -> str:
    text = module.__doc__ or ""
    return text[text.index(start):].split("\n\n", 1)[0].strip()


def _listeners(counts: dict) -> str:
    split = counts["split"]["listeners"]
    return (
        _paragraph(vgmidi_release, "Piece keys") + "\n\n"
        + f"This build: {counts['annotations']} annotations; grouping gives {counts['pairs']} pairs, "
        f"{counts['single_entries']} single entries and {counts['groups_of_four']} groups of four (per file: "
        + "; ".join(f"`{f}` {g['pairs']} pairs, {g['single_entries']} single" for f, g in counts["grouping"].items())
        + "). Only listeners with two usable entries for two different pieces are in `pdmer` (one-shot tasks: "
        f"support one piece, query the other): {split['train']} train, {split['validation']} validation and "
        f"{split['test']} test listeners; {split['mixed']} listeners whose pieces fall in different partitions "
        "are left out. Every usable annotation, paired or not, counts in its piece's `dmer` average."
    )


def _timing(counts: dict) -> str:
    bars = counts["bar_times"]
    return (_rule(measure_grid) + f"\n\nThis build: {bars['midi']} pieces timed by the MIDI's bars, "
            f"{bars['even']} by even spreading (their bar count differs from `measures`; listed in "
            "`build_report.json`, `counts.even_spread_pieces`).")


def vgmidi_card(counts: dict, audio: str | None, options: dict) -> CardInfo:
    """The card of a build; `audio` describes the renderer (None: labels only, no audio)."""
    split = counts["split"]
    made = (f"The audio was rendered from the MIDI files by dsaml with {audio}." if audio else
            "This build has no audio (`render_audio=False`): `audio` is an empty string in every row.")
    return CardInfo(
        pretty_name="VGMIDI dynamic emotion annotations per listener (dsaml PDMER format)",
        summary=(
            f"VGMIDI: {split['pieces']['train'] + split['pieces']['validation'] + split['pieces']['test']} piano "
            "arrangements of video game music (MIDI) rated by crowd listeners with valence and arousal in [-1, 1] "
            "once per measure, mapped to 0.5 s label frames, with one split per real listener (two pieces each) "
            f"for one-song personalization (DSAML, arXiv 2412.19200). {made}"
        ),
        source=(
            "Built with `dsaml prepare vgmidi` from the VGMIDI release (https://github.com/lucasnfe/vgmidi): "
            "`labelled/annotations/vgmidi_raw_{1,2}.json` and `labelled/midi/`."
        ),
        license="unknown",
        license_text=(
            "The VGMIDI release has no licence file; the arrangements are of commercial video game music. Use it for "
            "research only, and do not publish this folder publicly (prefer a private repo)."
        ),
        citation=CITATION,
        partitions=(
            _rule(piece_ring)
            + f"\n\nThis build (seed {options['seed']}, test fraction {options['test_fraction']:g}, validation "
            f"fraction {options['validation_fraction']:g}): pieces {_by_partition(split['pieces'])}; whole listeners "
            f"{_by_partition(split['listeners'])}. `dmer` uses the same piece partition. A `dmer` row's `annotator_info` gives the "
            "number `n` of annotations averaged (every usable annotation of the piece, the listener's own included): "
            "the crowd average of the OTHER listeners is `(n * average - own) / (n - 1)`."
        ),
        extra_sections=[
            ("Audio", made + " Each piece's audio lasts to the MIDI's end time (silence is added after the last "
             "note when later events extend the file)."),
            ("Listeners", _listeners(counts)),
            ("Label timing", _timing(counts)),
            ("Many splits", f"`pdmer` has one split per listener (thousands): the Hub viewer shows at most "
             f"{VIEWER_MAX_SPLITS} splits per config. Every split loads with `load_dataset`, but the first load of "
             "any `pdmer` split prepares all of them (measured for the 2447 listeners of the full release on a "
             "2-core CPU: about 12 s cold, 3 s once cached). `pdmer_flat` loads in about 1 s cold: read listeners "
             "from it and group or filter by the `annotator` column."),
        ],
        tags=["vgmidi", "midi"],
    )
