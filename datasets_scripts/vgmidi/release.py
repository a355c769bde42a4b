"""Reading the VGMIDI release's annotation files into pieces, checked annotations and paired listeners.

The release (github.com/lucasnfe/vgmidi, `labelled/`) is read as distributed:

    labelled/annotations/vgmidi_raw_1.json, vgmidi_raw_2.json
        {"pieces": {"piece<N>": {name, midi, duration, measures, ...}},
         "annotations": {"piece<N>_<k>": {valence: [...], arousal: [...], age, gender, country, musicianship,
                                          isKnown, ex1_*, ex2_*}}}
    labelled/midi/<midi>                  the MIDI file each piece names

Piece keys restart in each file and name different pieces there, so a piece is identified by its MIDI file.
No listener id is stored: a listener's entries (normally two, for two pieces) share the demographic fields and
the answers to the tool's two training examples (age, gender, country, musicianship, `ex1_*`, `ex2_*`; not
`isKnown`, which is per piece); grouping on them within one file gives the listeners. A group of one entry is
an unpaired listener; a group of more than two is a collision (people who answered identically: whose entry is
whose cannot be told). A listener's id is a short hash of the file
name and those answers: stable across builds, and anonymous (the free-text answers are hashed, never stored).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dsaml.datasets_scripts.common.report import DropReport
from dsaml.datasets_scripts.common.schema import sanitize_identifier
from dsaml.errors import DatasetBuildError

ANNOTATION_FILES = ("labelled/annotations/vgmidi_raw_1.json", "labelled/annotations/vgmidi_raw_2.json")
MIDI_DIR = "labelled/midi"
IDENTITY_FIELDS = ("age", "gender", "country", "musicianship", "ex1_arousal", "ex1_valence", "ex1_description",
                   "ex2_arousal", "ex2_valence")
INFO_FIELDS = ("age", "gender", "country", "musicianship")  # what a row's annotator_info keeps of a listener
ID_LENGTH = 10  # hex digits of a listener id: 40 bits, no collision expected among thousands of listeners
SCOPE = "annotations"

_PIECE_KEY = re.compile(r"^piece(\d+)$")
_ENTRY_KEY = re.compile(r"^(piece\d+)_(\d+)$")


@dataclass(frozen=True)
class Piece:
    """One listed piece: `song_id` comes from its MIDI file name; `order` is its key's number (tool order)."""

    song_id: str
    midi: Path
    name: str
    measures: int
    duration: float
    file: str
    key: str
    order: int


@dataclass
class Entry:
    """One annotation as listed: per-measure curves, its listener's answers, and the piece key it names."""

    file: str
    key: str
    piece_key: str
    arousal: np.ndarray
    valence: np.ndarray
    identity: tuple
    info: dict
    listener: str = ""
    group_size: int = 0  # entries sharing this entry's answers in its file (2 for a normal listener)
    piece: Piece | None = None  # set once the entry is checked against its file's pieces

    @property
    def where(self) -> str:
        return f"{self.file}, entry {self.key}"


@dataclass
class Release:
    """The usable entries (each with its piece, listener id and group size) and the release's pairing counts."""

    root: Path  # the folder holding labelled/
    pieces: dict[str, Piece]  # song_id -> piece
    entries: list[Entry]
    groups: dict[str, Counter] = field(default_factory=dict)  # file -> group size -> number of groups
    annotations: int = 0  # entries listed in the files, before any check
    unlisted_midi: list[str] = field(default_factory=list)  # MIDI files no piece names

    def listeners(self) -> dict[str, list[Entry]]:
        out: dict[str, list[Entry]] = defaultdict(list)
        for entry in self.entries:
            out[entry.listener].append(entry)
        return dict(out)


def _load_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DatasetBuildError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except ValueError as exc:
        raise DatasetBuildError(f"{path}: not valid JSON ({exc})") from exc
    if not (isinstance(data, dict) and isinstance(data.get("pieces"), dict)
            and isinstance(data.get("annotations"), dict)):
        raise DatasetBuildError(f"{path}: expected an object with 'pieces' and 'annotations' objects")
    return data


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def read_pieces(data: dict, file: str, midi_dir: Path, report: DropReport) -> dict[str, Piece]:
    """piece key -> Piece for the file's listed pieces whose fields are sound and whose MIDI file exists."""
    pieces = {}
    for key, meta in data["pieces"].items():
        where = f"{file}, piece {key}"
        match = _PIECE_KEY.match(key)
        measures = _number(meta.get("measures")) if isinstance(meta, dict) else None
        duration = _number(meta.get("duration")) if isinstance(meta, dict) else None
        midi = meta.get("midi") if isinstance(meta, dict) else None
        if not match or not isinstance(midi, str) or not midi or measures is None or duration is None:
            report.problem(SCOPE, "malformed piece", f"{where}: needs a 'piece<N>' key, 'midi', 'measures', 'duration'")
        elif measures < 1 or measures != int(measures) or duration <= 0:
            report.problem(SCOPE, "malformed piece", f"{where}: measures {measures:g}, duration {duration:g}")
        elif not (midi_dir / midi).is_file():
            report.problem(SCOPE, "MIDI file missing", f"{where}: {midi_dir / midi} not found")
        else:
            pieces[key] = Piece(sanitize_identifier(Path(midi).stem), midi_dir / midi, str(meta.get("name") or key),
                                int(measures), duration, file, key, int(match.group(1)))
    return pieces


def _curve(values) -> np.ndarray | None:
    if not isinstance(values, list) or not values:
        return None
    numbers = [_number(v) for v in values]
    return None if any(v is None for v in numbers) else np.asarray(numbers, dtype=np.float32)


def read_entries(data: dict, file: str, report: DropReport) -> list[Entry]:
    """Every entry with a well-formed key and numeric curves (others are reported), not yet checked against
    its piece. Identity answers are compared as text: the release mixes '1' and 1 for the same answer."""
    entries = []
    for key, item in data["annotations"].items():
        where = f"{file}, entry {key}"
        match = _ENTRY_KEY.match(key)
        if not match or not isinstance(item, dict):
            report.problem(SCOPE, "malformed entry", f"{where}: expected a 'piece<N>_<k>' key holding an object")
            continue
        arousal, valence = _curve(item.get("arousal")), _curve(item.get("valence"))
        if arousal is None or valence is None:
            report.problem(SCOPE, "malformed entry", f"{where}: 'arousal' and 'valence' must be lists of numbers")
            continue
        identity = tuple("" if item.get(name) is None else str(item[name]).strip() for name in IDENTITY_FIELDS)
        info = {name: item.get(name) for name in INFO_FIELDS}
        info["is_known"] = bool(item.get("isKnown"))
        entries.append(Entry(file, key, match.group(1), arousal, valence, identity, info))
    return entries


def listener_id(file: str, identity: tuple) -> str:
    digest = hashlib.sha256(json.dumps([file, list(identity)], ensure_ascii=False).encode("utf-8")).hexdigest()
    return digest[:ID_LENGTH]


def pair_listeners(entries: list[Entry]) -> Counter:
    """Give every entry its listener id and group size; returns how many groups have each size.

    Grouping uses every well-formed entry, before the checks against the pieces, so a listener whose other
    entry is bad still counts as a pair here (and is left out of the per-listener configs later)."""
    groups: dict[tuple, list[Entry]] = defaultdict(list)
    for entry in entries:
        groups[(entry.file, entry.identity)].append(entry)
    for (file, identity), group in groups.items():
        ident = listener_id(file, identity)
        for entry in group:
            entry.listener, entry.group_size = ident, len(group)
    return Counter(len(group) for group in groups.values())


def complete_pairs(entries: list[Entry], report: DropReport, scope: str) -> list[Entry]:
    """The entries of listeners with exactly two usable entries, for two different pieces: one-shot tasks
    (support one piece, query the other). The others are reported; their entries stay usable elsewhere."""
    by_listener: dict[str, list[Entry]] = defaultdict(list)
    for entry in entries:
        by_listener[entry.listener].append(entry)
    kept = []
    for ident, group in by_listener.items():
        keys = ", ".join(f"{e.file} {e.key}" for e in group)
        size = group[0].group_size
        if size == 1:
            report.filtered(scope, "unpaired entry (the listener's only annotation)", keys)
        elif size > 2:
            report.filtered(scope, "listener collision (more than two entries answer identically)", keys,
                            count=len(group))
        elif len(group) < 2:
            report.filtered(scope, "the listener's other entry was dropped", f"listener {ident}: {keys}")
        elif group[0].piece.song_id == group[1].piece.song_id:
            report.filtered(scope, "listener rated the same piece twice", keys, count=2)
        else:
            kept.extend(group)
    return kept


def check_entry(entry: Entry, pieces: dict[str, Piece], report: DropReport) -> bool:
    """Attach the entry's piece; False (reported) when the piece is not listed or the curves do not fit it."""
    piece = pieces.get(entry.piece_key)
    if piece is None:
        report.problem(SCOPE, "names a piece missing from its file's piece list",
                       f"{entry.where}: no usable piece {entry.piece_key}")
        return False
    a, v, m = entry.arousal.size, entry.valence.size, piece.measures
    if a != v:
        report.problem(SCOPE, "arousal and valence lengths differ", f"{entry.where}: {a} arousal, {v} valence values")
        return False
    if a != m:
        reason = ("one value more than the piece has measures" if a == m + 1
                  else "more values than the piece has measures" if a > m
                  else "fewer values than the piece has measures")
        report.problem(SCOPE, reason, f"{entry.where}: {a} values, piece {piece.key} ({piece.midi.name}) has {m}")
        return False
    if max(np.abs(entry.arousal).max(), np.abs(entry.valence).max()) > 1 + 1e-6:
        report.problem(SCOPE, "value outside [-1, 1]", entry.where)
        return False
    entry.piece = piece
    return True


def find_release(source: Path) -> Path:
    """The folder holding `labelled/` (the release root or its parent `vgmidi/`)."""
    for root in (source, source / "vgmidi"):
        if all((root / name).is_file() for name in ANNOTATION_FILES) and (root / MIDI_DIR).is_dir():
            return root
    raise DatasetBuildError(
        f"VGMIDI release not found under {source}: expected {', '.join(ANNOTATION_FILES)} and {MIDI_DIR}/"
    )


def _unique_song_ids(pieces: list[Piece]) -> None:
    seen: dict[str, Piece] = {}
    for piece in pieces:
        other = seen.setdefault(piece.song_id, piece)
        if other.midi != piece.midi:
            raise DatasetBuildError(f"MIDI files {other.midi.name!r} and {piece.midi.name!r} both become song id "
                                    f"{piece.song_id!r}; rename one of them")


def read_release(source: str | Path, report: DropReport) -> Release:
    """Pieces, checked and paired entries, and the pairing counts of a release folder (no MIDI is parsed)."""
    root = find_release(Path(source).expanduser().resolve())
    midi_dir = root / MIDI_DIR
    pieces: dict[str, Piece] = {}
    entries: list[Entry] = []
    groups: dict[str, Counter] = {}
    listed = 0
    for relative in ANNOTATION_FILES:
        path = root / relative
        data = _load_json(path)
        file_pieces = read_pieces(data, path.name, midi_dir, report)
        found = read_entries(data, path.name, report)
        listed += len(data["annotations"])
        groups[path.name] = pair_listeners(found)
        entries += [e for e in found if check_entry(e, file_pieces, report)]
        _unique_song_ids([*pieces.values(), *file_pieces.values()])
        pieces.update({p.song_id: p for p in file_pieces.values()})
    named = {p.midi.name for p in pieces.values()}
    unlisted = sorted(p.name for p in midi_dir.glob("*.mid") if p.name not in named)
    return Release(root, pieces, entries, groups, listed, unlisted)
