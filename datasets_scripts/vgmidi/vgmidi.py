"""VGMIDI (Ferreira & Whitehead, ISMIR 2019) -> dsaml folder: real listeners, one 1-shot task each.

200 piano arrangements of video game music (MIDI), each rated by about 30 crowd listeners with valence and
arousal in [-1, 1], one value per measure. Steps (each in its own module):

1. `vgmidi_release`: read the two annotation files as distributed, check every entry against its file's
   piece list, pair each listener's two entries (no listener id is stored in the release);
2. `midi_files` / `measure_grid`: the MIDI's bar times, and the per-measure values on the 2 Hz label grid;
3. `midi_render`: audio rendered from the MIDI (sine tones by default), cached by content;
4. `piece_ring`: validation and test PIECES as contiguous blocks along the tool's ring of pieces; a listener
   belongs to a partition when both their pieces do.

Configs: `pdmer` (one split per listener, `annotator_<id>`), `pdmer_flat` (the same rows in `train` /
`validation` / `test`), `dmer` (each piece's crowd average over ALL its usable annotations, including those
of listeners left out of `pdmer`; split by the same piece partition, so no test piece is ever trained on).
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np

from dsaml.datasets_scripts.common.audio_files import drop_uncovered, probe_durations
from dsaml.datasets_scripts.common.configs import check_configs, write_configs
from dsaml.datasets_scripts.common.report import DropReport, logger
from dsaml.datasets_scripts.common.schema import AVERAGE_ANNOTATOR, FRAME_RATE, Record
from dsaml.datasets_scripts.common.writer import DatasetFolderWriter
from dsaml.datasets_scripts.vgmidi.card import vgmidi_card
from dsaml.datasets_scripts.vgmidi.measure_grid import MeasureGrid, measure_grid, to_frames
from dsaml.datasets_scripts.vgmidi.midi_files import load_midi, midi_timing
from dsaml.datasets_scripts.vgmidi.midi_render import DEFAULT_SAMPLE_RATE, Renderer, cached_render
from dsaml.datasets_scripts.vgmidi.piece_ring import MIXED, listener_partitions, ring_partitions, split_counts
from dsaml.datasets_scripts.vgmidi.release import (
    SCOPE,
    Entry,
    Piece,
    Release,
    complete_pairs,
    find_release,
    read_release,
)
from dsaml.errors import MidiError
from dsaml.utils.cache import cache_root

BUILDER_VERSION = "1"  # bump when the rows for a given release and options change
TEST_FRACTION = 0.15
VALIDATION_FRACTION = 0.10
LONGER_THAN_MIDI = 1.0  # seconds: a listed duration this much beyond the MIDI's end is noted (labels stop there)


def piece_grids(release: Release, report: DropReport, progress: bool = False) -> dict[str, MeasureGrid]:
    """song_id -> measure grid of every piece whose MIDI file can be read (others are reported)."""
    from tqdm.auto import tqdm

    grids = {}
    for song_id, piece in tqdm(sorted(release.pieces.items()), desc="reading MIDI", unit="file",
                               disable=not progress):
        try:
            grid = measure_grid(piece.measures, piece.duration, midi_timing(load_midi(piece.midi)))
        except MidiError as exc:
            report.problem("pieces", "unreadable MIDI file", f"{piece.file}, piece {piece.key}: {exc}")
            continue
        if grid.frames < 1:
            report.problem("pieces", "piece shorter than one label frame", f"{piece.file}, piece {piece.key}")
            continue
        if piece.duration > grid.end_seconds + LONGER_THAN_MIDI:
            report.note("listed duration longer than the MIDI: labels stop at the MIDI's end",
                        f"{piece.midi.name}: {piece.duration:.1f} s listed, MIDI ends at {grid.end_seconds:.1f} s")
        grids[song_id] = grid
    return grids


def render_pieces(pieces: dict[str, Piece], renderer: Renderer, cache_dir: Path, report: DropReport,
                  progress: bool = False) -> dict[str, Path]:
    """song_id -> cached audio file of every piece that renders (others are reported)."""
    from tqdm.auto import tqdm

    files = {}
    for song_id, piece in tqdm(sorted(pieces.items()), desc="rendering MIDI", unit="file", disable=not progress):
        try:
            files[song_id] = cached_render(piece.midi, renderer, cache_dir)
        except MidiError as exc:
            report.problem("pieces", "MIDI file cannot be rendered", f"{piece.file}, piece {piece.key}: {exc}")
    return files


def entry_records(entries: list[Entry], grids: dict[str, MeasureGrid], report: DropReport) -> list[Record]:
    """One record per entry whose piece survived, values on the 2 Hz grid (partition filled in later)."""
    records = []
    for entry in entries:
        grid = grids.get(entry.piece.song_id)
        if grid is None:
            report.problem(SCOPE, "annotation of a piece left out (see pieces)", entry.where)
            continue
        info = {**entry.info, "source_entry": f"{entry.file}:{entry.key}"}
        records.append(Record(entry.piece.song_id, entry.listener, to_frames(entry.arousal, grid),
                              to_frames(entry.valence, grid), 0.0, FRAME_RATE, "train", info))
    return records


def crowd_average(records: list[Record], partition: dict[str, str]) -> list[Record]:
    """Each piece's mean curve over all its records (every piece's curves share its grid, so equal length)."""
    by_song: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        by_song[record.song_id].append(record)
    return [
        Record(song, AVERAGE_ANNOTATOR, np.mean([r.arousal for r in rows], axis=0).astype(np.float32),
               np.mean([r.valence for r in rows], axis=0).astype(np.float32), 0.0, FRAME_RATE, partition[song],
               {"annotations": len(rows)})
        for song, rows in sorted(by_song.items())
    ]


def rings_of(pieces: dict[str, Piece], songs: set[str]) -> dict[str, list[str]]:
    """Annotation file -> its usable pieces in the tool's order (piece key number)."""
    rings: dict[str, list[str]] = defaultdict(list)
    for piece in sorted(pieces.values(), key=lambda p: (p.file, p.order)):
        if piece.song_id in songs:
            rings[piece.file].append(piece.song_id)
    return dict(rings)


def assign_partitions(records: list[Record], release: Release, songs: set[str], test_fraction: float,
                      validation_fraction: float, seed: int, report: DropReport):
    """(pdmer records with their listener's partition, piece partition, split counts); mixed listeners are
    reported and left out of pdmer."""
    pairs: dict[str, list[str]] = defaultdict(list)
    for record in records:
        pairs[record.annotator].append(record.song_id)
    partition = ring_partitions(rings_of(release.pieces, songs), test_fraction, validation_fraction, seed)
    of_listener = listener_partitions({k: (v[0], v[1]) for k, v in pairs.items()}, partition)
    kept = []
    for record in records:
        where = of_listener[record.annotator]
        if where == MIXED:
            report.filtered("pdmer", "listener's two pieces in different partitions",
                            f"listener {record.annotator}: {record.song_id} ({partition[record.song_id]})")
        else:
            kept.append(record.with_partition(where))
    return kept, partition, split_counts(partition, of_listener)


def release_counts(release: Release, grids: dict[str, MeasureGrid]) -> dict:
    """The numbers the build report states about the release itself (before any split)."""
    grouping = {}
    for file, sizes in release.groups.items():
        grouping[file] = {"pairs": sizes.get(2, 0), "single_entries": sizes.get(1, 0),
                          "larger_groups": {str(k): v for k, v in sorted(sizes.items()) if k > 2}}
    total = sum(release.groups.values(), Counter())
    methods = Counter(g.method for g in grids.values())
    return {
        "annotations": release.annotations,
        "pieces_listed": len(release.pieces),
        "unlisted_midi_files": release.unlisted_midi,
        "grouping": grouping,
        "pairs": total.get(2, 0),
        "single_entries": total.get(1, 0),
        "groups_of_four": total.get(4, 0),
        "bar_times": {"midi": methods.get("midi", 0), "even": methods.get("even", 0)},
        "even_spread_pieces": sorted(s for s, g in grids.items() if g.method == "even"),
    }


def prepare_rows(source: str | os.PathLike, report: DropReport, *, renderer: Renderer | None = None,
                 cache_dir: Path | None = None, test_fraction: float = TEST_FRACTION,
                 validation_fraction: float = VALIDATION_FRACTION, seed: int = 0, progress: bool = False) -> dict:
    """Release counts, records, split and (with a `renderer`) the cached audio of every usable piece: all of
    the build but writing. Without a renderer nothing is rendered (the test on the real release uses that)."""
    release = read_release(source, report)
    grids = piece_grids(release, report, progress)
    audio: dict[str, Path] = {}
    if renderer is not None:
        audio = render_pieces({s: release.pieces[s] for s in grids}, renderer, cache_dir, report, progress)
        grids = {s: g for s, g in grids.items() if s in audio}
    records = entry_records(release.entries, grids, report)
    if renderer is not None:
        records = drop_uncovered(records, probe_durations(audio, report, "audio"), report, SCOPE)
    by_entry = {(r.annotator, r.song_id): r for r in records}
    usable = [e for e in release.entries if (e.listener, e.piece.song_id) in by_entry]
    paired = [by_entry[(e.listener, e.piece.song_id)] for e in complete_pairs(usable, report, "pdmer")]
    songs = {r.song_id for r in records}
    pdmer, partition, counts = assign_partitions(paired, release, songs, test_fraction, validation_fraction, seed,
                                                 report)
    return {"release": release, "grids": grids, "audio": audio, "records": records, "pdmer": pdmer,
            "dmer": crowd_average(records, partition), "partition": partition,
            "counts": {**release_counts(release, grids), "split": counts}}


def build_vgmidi(
    source: str | os.PathLike,
    output: str | os.PathLike,
    *,
    renderer: str = "sine",
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    soundfont: str | os.PathLike | None = None,
    render_audio: bool = True,
    test_fraction: float = TEST_FRACTION,
    validation_fraction: float = VALIDATION_FRACTION,
    seed: int = 0,
    configs: Sequence[str] | None = None,
    cache_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    strict: bool = False,
    progress: bool = False,
) -> Path:
    """Build the VGMIDI dataset folder at `output` (see the module docstring). `render_audio=False` writes the
    labels only (`audio` = ""); `cache_dir` holds rendered audio (default `<dsaml cache>/vgmidi-audio`)."""
    engine = Renderer(renderer, int(sample_rate), Path(soundfont) if soundfont else None)
    if render_audio:
        engine.check_available()
    wanted = check_configs(configs, {"dmer", "pdmer", "pdmer_flat"})
    find_release(Path(source).expanduser().resolve())  # a wrong source fails before the output folder is made
    report = DropReport(strict=strict)
    writer = DatasetFolderWriter(output, overwrite=overwrite, progress=progress)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else cache_root() / "vgmidi-audio"
    rows = prepare_rows(source, report, renderer=engine if render_audio else None, cache_dir=cache,
                        test_fraction=test_fraction, validation_fraction=validation_fraction, seed=seed,
                        progress=progress)
    used = {r.song_id for r in rows["dmer"]}
    if render_audio:
        writer.add_audio_files({s: rows["audio"][s] for s in used})
    else:
        writer.audio_paths.update({s: "" for s in used})
    write_configs(writer, wanted, rows["dmer"], rows["pdmer"])
    options = {"renderer": engine.name, "sample_rate": engine.sample_rate,
               "soundfont": str(engine.soundfont) if engine.soundfont else None, "render_audio": render_audio,
               "test_fraction": test_fraction, "validation_fraction": validation_fraction, "seed": seed,
               "configs": wanted}
    summary = {
        "dataset": "vgmidi",
        "builder_version": BUILDER_VERSION,
        "source": str(rows["release"].root),
        "options": options,
        "songs": len(used),
        "annotators": len({r.annotator for r in rows["pdmer"]}),
        "counts": rows["counts"],
        "pieces": piece_table(rows),
    }
    card = vgmidi_card(rows["counts"], engine.describe() if render_audio else None, options)
    logger.info("VGMIDI: %s", rows["counts"]["split"])
    return writer.finish(card, report, summary)


def piece_table(rows: dict) -> dict[str, dict]:
    """song_id -> where the piece comes from, how its measures were timed, its frames and partition."""
    table = {}
    for song_id, grid in sorted(rows["grids"].items()):
        piece = rows["release"].pieces[song_id]
        table[song_id] = {"file": piece.file, "key": piece.key, "name": piece.name, "midi": piece.midi.name,
                          "measures": piece.measures, "duration": round(piece.duration, 3),
                          "bar_times": grid.method, "frames": grid.frames,
                          "partition": rows["partition"].get(song_id)}
    return table


def add_arguments(parser) -> None:
    """The `dsaml prepare vgmidi` options beyond --source/--output/--seed/--overwrite (argparse)."""
    parser.add_argument("--renderer", choices=("sine", "fluidsynth"), default="sine",
                        help="sine: pretty_midi's sine tones, no synthesizer needed (default); fluidsynth: a "
                             "SoundFont, needs pyfluidsynth and the FluidSynth library")
    parser.add_argument("--soundfont", type=Path, help="SoundFont (.sf2) for --renderer fluidsynth "
                                                       "(default: pretty_midi's bundled General MIDI font)")
    parser.add_argument("--sample-rate", type=int, default=DEFAULT_SAMPLE_RATE,
                        help=f"rate of the rendered audio in Hz (default: {DEFAULT_SAMPLE_RATE})")
    parser.add_argument("--no-audio", action="store_true", help="labels only: skip rendering (audio = \"\")")
    parser.add_argument("--test-fraction", type=float, default=TEST_FRACTION,
                        help=f"fraction of each file's pieces in the test block (default: {TEST_FRACTION})")
    parser.add_argument("--validation-fraction", type=float, default=VALIDATION_FRACTION,
                        help=f"fraction in the validation block (default: {VALIDATION_FRACTION})")
    parser.add_argument("--configs", nargs="+", choices=("dmer", "pdmer", "pdmer_flat"),
                        help="configs to build (default: all)")
    parser.add_argument("--strict", action="store_true", help="fail on the first bad entry instead of skipping")


def build_from_args(args, progress: bool) -> Path:
    """`build_vgmidi` from the parsed `dsaml prepare vgmidi` arguments."""
    return build_vgmidi(args.source, args.output, renderer=args.renderer, sample_rate=args.sample_rate,
                        soundfont=args.soundfont, render_audio=not args.no_audio, test_fraction=args.test_fraction,
                        validation_fraction=args.validation_fraction, seed=args.seed, configs=args.configs,
                        overwrite=args.overwrite, strict=args.strict, progress=progress)
