"""VGMIDI builder: the release layout in (written here, every bad-entry case included), listeners paired,
per-measure values on the 2 Hz grid, pieces split along the ring, a load_dataset-able folder out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from datasets import load_dataset
from fixtures_data import require_shared_data

from dsaml.audio.reader import load_audio
from dsaml.commands.prepare import main as prepare_main
from dsaml.data.datasets import annotator_songs, dataset_metadata, load_dmer, load_pdmer, resolve_audio
from dsaml.data.tasks import TaskSampler, evaluation_tasks
from dsaml.datasets_scripts import DatasetBuildError, DropReport, build_vgmidi
from dsaml.datasets_scripts.vgmidi import midi_render
from dsaml.datasets_scripts.vgmidi.midi_files import load_midi, midi_timing
from dsaml.datasets_scripts.vgmidi.piece_ring import ring_partitions
from dsaml.datasets_scripts.vgmidi.release import listener_id
from dsaml.datasets_scripts.vgmidi.vgmidi import prepare_rows

pretty_midi = pytest.importorskip("pretty_midi")

RATE = 8000  # Hz: the fixture's rendered audio (small and fast)
FRACTIONS = dict(test_fraction=0.34, validation_fraction=0.34)


def write_midi(path: Path, bars: int, bpm: float, pitch: int = 60) -> None:
    """A 4/4 piece of `bars` bars, one note per beat, the last note ending exactly on the final bar line."""
    midi = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    midi.time_signature_changes.append(pretty_midi.TimeSignature(4, 4, 0.0))
    piano = pretty_midi.Instrument(program=0)
    beat = 60.0 / bpm
    for i in range(4 * bars):
        piano.notes.append(pretty_midi.Note(velocity=90, pitch=pitch + i % 12, start=i * beat, end=(i + 1) * beat))
    midi.instruments.append(piano)
    path.parent.mkdir(parents=True, exist_ok=True)
    midi.write(str(path))


def person(n: int, with_examples: bool = True) -> dict:
    """A listener's answers: the fields that pair their entries."""
    answers = {"age": f"{20 + n}-{25 + n}", "gender": "Female" if n % 2 else "Male", "country": "US",
               "musicianship": 1 + n % 5}
    if with_examples:
        answers.update({"ex1_arousal": "1", "ex1_valence": str(n % 2 + 1), "ex1_description": f"answer {n}",
                        "ex2_arousal": "up", "ex2_valence": "2"})
    return answers


def entry(who: dict, values: list[float], shift: float = 0.0) -> dict:
    return {**who, "isKnown": False, "arousal": list(values), "valence": [round(v + shift, 3) for v in values]}


def constant(measures: int, value: float) -> list[float]:
    return [value] * measures


# File 1: six pieces in a ring. piece0 = A.mid (3 bars at 100 bpm = 2.4 s bars, measures 3: the MIDI's bars);
# piece1 = B.mid (3 bars at 120 bpm, measures 4: spread over its listed 4.8 s); piece2..5 two bars each.
# File 2: five other pieces (two bars each), keys restarting at piece0.
FILE1 = {"piece0": ("A.mid", 3, 100, 3, 7.2), "piece1": ("B.mid", 3, 120, 4, 4.8)}
FILE1.update({f"piece{i}": (f"{c}.mid", 2, 120, 2, 4.0) for i, c in zip(range(2, 6), "CDEF")})
FILE2 = {f"piece{i}": (f"{c}.mid", 2, 120, 2, 4.0) for i, c in zip(range(5), "GHIJK")}


def _annotations_1() -> dict:
    a = {}
    ring = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 0)]
    for n, pair in enumerate(ring, start=1):
        for p in pair:
            measures = FILE1[f"piece{p}"][3]
            a[f"piece{p}_{n}"] = entry(person(n), constant(measures, 0.1 * n))
    a["piece0_1"] = entry(person(1), [0.1, 0.2, 0.3])  # listener 1 on piece0: three measure values
    a["piece1_1"] = entry(person(1), [-0.5, 0.0, 0.5, 1.0], shift=-0.1)  # on piece1: four values, spread evenly
    a["piece0_7"] = entry(person(7), [0.7, 0.7, 0.7])  # listener 7: the other entry names an unlisted piece
    a["piece9_7"] = entry(person(7), [0.7, 0.7])
    a["piece2_8"] = entry(person(8), [0.8, 0.8])  # listener 8: the other entry has one value too many
    a["piece3_8"] = entry(person(8), [0.8, 0.8, 0.8])
    a["piece2_9"] = entry(person(9), [0.9, 0.9])  # unpaired: the only entry of its answers
    for key in ("piece3_10", "piece4_10", "piece4_11", "piece5_10"):  # two people who answered identically
        a[key] = entry(person(10), [-0.2, -0.2])
    return a


def _annotations_2() -> dict:
    a = {}
    pairs = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 0)]
    for n, pair in enumerate(pairs, start=21):
        for p in pair:
            a[f"piece{p}_{n}"] = entry(person(n), [-0.3, 0.3])
    a["piece0_26"] = a["piece2_26"] = entry(person(26, with_examples=False), [0.5, -0.5])  # no ex_* fields
    a["piece0_27"] = a["piece1_27"] = entry(person(1), [0.0, 0.0])  # file 1's listener 1's answers: another person
    return a


def write_release(root: Path) -> Path:
    for name, pieces, entries in (("vgmidi_raw_1.json", FILE1, _annotations_1()),
                                  ("vgmidi_raw_2.json", FILE2, _annotations_2())):
        listed = {}
        for key, (midi, bars, bpm, measures, duration) in pieces.items():
            write_midi(root / "labelled" / "midi" / midi, bars, bpm, pitch=ord(midi[0]))  # 11 different files
            listed[key] = {"name": midi[:-4], "midi": midi, "measures": measures, "duration": duration,
                           "audio": f"audio/{midi[:-4]}.wav"}
        path = root / "labelled" / "annotations" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"annotations": entries, "pieces": listed}))
    write_midi(root / "labelled" / "midi" / "Unlisted.mid", 1, 120)
    return root


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    return write_release(tmp_path_factory.mktemp("vgmidi-release") / "vgmidi")


@pytest.fixture(scope="module")
def built(release, tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("vgmidi-audio-cache")
    return build_vgmidi(release, tmp_path_factory.mktemp("vgmidi-out") / "data", sample_rate=RATE,
                        cache_dir=cache, **FRACTIONS)


def _dropped(folder: Path) -> dict[str, dict[str, int]]:
    report = json.loads((folder / "build_report.json").read_text())
    return {scope: {d["reason"]: d["count"] for d in items} for scope, items in report["dropped"].items()}


def test_counts_and_every_bad_entry(built):
    counts = dataset_metadata(built)["counts"]
    assert counts["annotations"] == 21 + 14
    assert counts["grouping"] == {
        "vgmidi_raw_1.json": {"pairs": 8, "single_entries": 1, "larger_groups": {"4": 1}},
        "vgmidi_raw_2.json": {"pairs": 7, "single_entries": 0, "larger_groups": {}},
    }
    assert (counts["pairs"], counts["single_entries"], counts["groups_of_four"]) == (15, 1, 1)
    assert counts["unlisted_midi_files"] == ["Unlisted.mid"]
    assert counts["bar_times"] == {"midi": 10, "even": 1} and counts["even_spread_pieces"] == ["B"]
    assert _dropped(built) == {
        "annotations": {"names a piece missing from its file's piece list": 1,
                        "one value more than the piece has measures": 1},
        "pdmer": {"the listener's other entry was dropped": 2,
                  "unpaired entry (the listener's only annotation)": 1,
                  "listener collision (more than two entries answer identically)": 4,
                  "listener's two pieces in different partitions": 2 * counts["split"]["listeners"]["mixed"]},
    }
    examples = json.loads((built / "build_report.json").read_text())["examples"]
    assert examples["names a piece missing from its file's piece list"] == [
        "vgmidi_raw_1.json, entry piece9_7: no usable piece piece9"]
    assert examples["one value more than the piece has measures"] == [
        "vgmidi_raw_1.json, entry piece3_8: 3 values, piece piece3 (D.mid) has 2"]


def test_listener_pairing(release):
    rows = prepare_rows(release, DropReport(), **FRACTIONS)
    listeners = annotator_songs_of(rows["records"])
    one = listener_id("vgmidi_raw_1.json", tuple(str(v) for v in _identity(person(1))))
    assert sorted(listeners[one]) == ["A", "B"]
    other = listener_id("vgmidi_raw_2.json", tuple(str(v) for v in _identity(person(1))))
    assert other != one and sorted(listeners[other]) == ["G", "H"]  # same answers in another file: another person
    no_examples = listener_id("vgmidi_raw_2.json", tuple(str(v) for v in _identity(person(26, False))))
    assert sorted(listeners[no_examples]) == ["G", "I"]
    # two usable entries: the 6 ring listeners of file 1 and the 7 listeners of file 2; listeners 7, 8 and 9
    # have one usable entry each, and the group of four keeps its four
    assert sorted(len(songs) for songs in listeners.values()) == [1, 1, 1] + [2] * 13 + [4]
    assert all(len(i) == 10 and int(i, 16) >= 0 for i in listeners)  # short hex ids


def _identity(answers: dict) -> list:
    from dsaml.datasets_scripts.vgmidi.release import IDENTITY_FIELDS

    return ["" if answers.get(f) is None else answers[f] for f in IDENTITY_FIELDS]


def annotator_songs_of(records) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in records:
        out.setdefault(r.annotator, []).append(r.song_id)
    return out


def test_two_hertz_mapping_by_hand(release):
    rows = prepare_rows(release, DropReport(), **FRACTIONS)
    one = listener_id("vgmidi_raw_1.json", tuple(str(v) for v in _identity(person(1))))
    curves = {r.song_id: r for r in rows["records"] if r.annotator == one}
    # A.mid: bars at 0, 2.4, 4.8 s (100 bpm, 4/4), ends at 7.2 s -> 14 frames; frame k takes the measure of
    # its middle (k + 0.5) / 2: middles 0.25..2.25 -> bar 1, 2.75..4.75 -> bar 2, 5.25..6.75 -> bar 3.
    np.testing.assert_allclose(curves["A"].arousal, [0.1] * 5 + [0.2] * 5 + [0.3] * 4, atol=1e-7)
    assert rows["grids"]["A"].method == "midi"
    np.testing.assert_allclose(rows["grids"]["A"].starts, [0.0, 2.4, 4.8], atol=1e-9)  # not 7.2: the end
    # B.mid has 3 bars but 4 measures: spread over the listed 4.8 s (1.2 s each), 9 frames; middles
    # 0.25, 0.75 -> m1; 1.25, 1.75, 2.25 -> m2; 2.75, 3.25 -> m3; 3.75, 4.25 -> m4.
    np.testing.assert_allclose(curves["B"].arousal, [-0.5, -0.5, 0, 0, 0, 0.5, 0.5, 1, 1], atol=1e-7)
    np.testing.assert_allclose(curves["B"].valence, np.float32([-0.6, -0.6, -0.1, -0.1, -0.1, 0.4, 0.4, 0.9, 0.9]))
    assert rows["grids"]["B"].method == "even" and rows["grids"]["B"].frames == 9
    timing = midi_timing(load_midi(release / "labelled" / "midi" / "B.mid"))
    assert timing.bar_starts.tolist() == pytest.approx([0.0, 2.0, 4.0]) and timing.end_seconds == pytest.approx(6.0)


def test_ring_split_keeps_listeners_whole(release, built):
    rows = prepare_rows(release, DropReport(), **FRACTIONS)
    partition = rows["partition"]
    ring1, ring2 = list("ABCDEF"), list("GHIJK")
    for ring, (test, validation) in ((ring1, (2, 2)), (ring2, (2, 2))):  # round(0.34 * 6), round(0.34 * 5)
        kinds = [partition[p] for p in ring]
        assert kinds.count("test") == test and kinds.count("validation") == validation
        start = next(i for i in range(len(ring)) if kinds[i] == "test" and kinds[i - 1] != "test")
        rolled = kinds[start:] + kinds[:start]  # along the ring: the test block, then validation, then train
        assert rolled == ["test"] * test + ["validation"] * validation + ["train"] * (len(ring) - test - validation)
    # the same seed and rule give the same split; another seed moves the blocks
    again = ring_partitions({"vgmidi_raw_1.json": ring1, "vgmidi_raw_2.json": ring2}, 0.34, 0.34, 0)
    assert again == partition
    assert ring_partitions({"vgmidi_raw_1.json": ring1, "vgmidi_raw_2.json": ring2}, 0.34, 0.34, 1) != partition
    flat = load_pdmer(built, "pdmer_flat", cache_dir=hf_cache_dir(built))
    for split in flat.values():
        for row in split:
            assert partition[row["song_id"]] == row["partition"]  # both of a listener's pieces in its partition
    split = dataset_metadata(built)["counts"]["split"]
    assert {k: v for k, v in split["listeners"].items() if k != "mixed"} == {
        p: len(set(flat[p]["annotator"])) if p in flat else 0 for p in ("train", "validation", "test")}
    assert sum(split["listeners"].values()) == 13


def hf_cache_dir(built: Path) -> str:
    return str(built.parent / "hf-cache")


def test_load_dataset_round_trip_and_tasks(built):
    cache = hf_cache_dir(built)
    flat = load_dataset(str(built), "pdmer_flat", cache_dir=cache)
    listener = flat["train"][0]["annotator"]
    one = load_dataset(str(built), "pdmer", split=f"annotator_{listener}", cache_dir=cache)
    assert one.num_rows == 2 and len(set(one["song_id"])) == 2 and set(one["annotator"]) == {listener}
    info = json.loads(one[0]["annotator_info"])
    assert set(info) >= {"age", "gender", "country", "musicianship", "is_known", "source_entry"}
    assert "ex1_description" not in info  # free-text answers only go into the hash, never into the data
    dmer = load_dmer(built, cache_dir=cache)
    averages = {r["song_id"]: r for split in dmer.values() for r in split}
    assert len(averages) == 11
    # A.mid: listeners 1, 6 and 7 (7's other entry was bad; this one is fine and counts in the crowd average)
    a = averages["A"]
    assert json.loads(a["annotator_info"]) == {"annotations": 3}
    np.testing.assert_allclose(a["arousal"], np.float32([0.1] * 5 + [0.2] * 5 + [0.3] * 4) / 3
                               + np.float32(0.6 + 0.7) / 3, atol=1e-6)
    wave, rate = load_audio(resolve_audio(built, a["audio"]))
    assert rate == RATE and wave.size / rate >= len(a["arousal"]) / 2 and a["audio"] == "audio/A.flac"
    # dsaml.data.tasks: a 1-shot task (support one piece, query the other) from the train listeners
    train = load_pdmer(built, "pdmer_flat", split="train", cache_dir=cache)
    groups = annotator_songs(train)
    task = TaskSampler(groups, support_songs=1, query_songs=1, tasks_per_step=2, seed=0).sample(0)[0]
    assert len(task.support) == len(task.query) == 1
    assert train[task.support[0]]["song_id"] != train[task.query[0]]["song_id"]
    assert train[task.support[0]]["annotator"] == train[task.query[0]]["annotator"] == task.annotator
    test = load_pdmer(built, "pdmer_flat", split="test", cache_dir=cache)
    assert len(evaluation_tasks(annotator_songs(test), support_songs=1)) == len(set(test["annotator"]))


def test_rendered_audio_is_cached(release, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    build_vgmidi(release, tmp_path / "one", sample_rate=RATE, cache_dir=cache, configs=["dmer"])
    cached = sorted(p.name for p in cache.iterdir())
    suffix = f"-sine-{RATE}-v{midi_render.RENDER_VERSION}.flac"  # keyed by content, renderer, rate
    assert len(cached) == 11 and all(name.endswith(suffix) for name in cached)

    def no_rendering(*args, **kwargs):
        raise AssertionError("rendered again")

    monkeypatch.setattr(midi_render, "render", no_rendering)
    build_vgmidi(release, tmp_path / "two", sample_rate=RATE, cache_dir=cache, configs=["dmer"])
    assert sorted(p.name for p in cache.iterdir()) == cached
    assert "sine tones" in (tmp_path / "two" / "README.md").read_text()


def test_audio_lasts_to_the_midi_end(tmp_path):
    """A meta event long after the last note extends the MIDI (and its label grid): the audio is padded."""
    path = tmp_path / "pedal.mid"
    write_midi(path, 1, 120)  # notes end at 2.0 s
    midi = pretty_midi.PrettyMIDI(str(path))
    midi.key_signature_changes.append(pretty_midi.KeySignature(0, 5.0))  # pretty_midi's end time: 5 s
    midi.write(str(path))
    wave = midi_render.render(path, midi_render.Renderer("sine", RATE))
    # pretty_midi synthesizes 1 s past the last note (3 s); the MIDI lasts 5 s
    assert wave.size == 5 * RATE and np.abs(wave[int(3.1 * RATE):]).max() == 0.0
    assert np.abs(wave).max() == pytest.approx(midi_render.PEAK, rel=1e-6)


def test_labels_only_and_clear_errors(release, tmp_path, capsys):
    out = build_vgmidi(release, tmp_path / "labels", render_audio=False, configs=["pdmer_flat"], **FRACTIONS)
    assert not (out / "audio").exists() and set(load_pdmer(out, cache_dir=str(tmp_path / "c"))["train"]["audio"]) == {""}
    broken = tmp_path / "broken"
    (broken / "labelled" / "annotations").mkdir(parents=True)
    (broken / "labelled" / "midi").mkdir()
    (broken / "labelled" / "annotations" / "vgmidi_raw_1.json").write_text("{not json")
    (broken / "labelled" / "annotations" / "vgmidi_raw_2.json").write_text("{}")
    with pytest.raises(DatasetBuildError, match=r"vgmidi_raw_1.json: not valid JSON"):
        build_vgmidi(broken, tmp_path / "x", render_audio=False)
    capsys.readouterr()
    assert prepare_main(["vgmidi", "--source", str(tmp_path / "nowhere"), "--output", str(tmp_path / "y")]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("dsaml prepare: error: VGMIDI release not found under") and "\n" not in error
    assert not (tmp_path / "y").exists()  # nothing written for a source that is not there
    with pytest.raises(DatasetBuildError, match="entry piece9_7: no usable piece piece9: names a piece missing"):
        build_vgmidi(release, tmp_path / "strict", render_audio=False, strict=True)


@pytest.mark.shared_data
def test_real_release_parsing_and_counts():
    """The real release: counts of the issue, without rendering any audio."""
    root = require_shared_data() / "vgmidi"
    if not root.is_dir():
        pytest.skip("VGMIDI release not in the shared data")
    report = DropReport()
    rows = prepare_rows(root, report)
    counts = rows["counts"]
    assert counts["annotations"] == 6105 and counts["pieces_listed"] == 200
    assert {f: g["pairs"] for f, g in counts["grouping"].items()} == {"vgmidi_raw_1.json": 1484,
                                                                      "vgmidi_raw_2.json": 1533}
    assert (counts["pairs"], counts["single_entries"], counts["groups_of_four"]) == (3017, 47, 6)
    assert len(counts["unlisted_midi_files"]) == 4
    dropped = {reason: n for scope in report.dropped.values() for reason, n in scope.items()}
    assert dropped["names a piece missing from its file's piece list"] == 125
    assert dropped["one value more than the piece has measures"] == 3
    assert dropped["unpaired entry (the listener's only annotation)"] == 46  # the 47th names a missing piece
    assert dropped["listener collision (more than two entries answer identically)"] == 24
    assert dropped["the listener's other entry was dropped"] == 109
    data = {n: json.loads((root / "labelled" / "annotations" / n).read_text()) for n in ("vgmidi_raw_1.json",)}
    missing = {k.rsplit("_", 1)[0] for k in data["vgmidi_raw_1.json"]["annotations"]} - set(
        data["vgmidi_raw_1.json"]["pieces"])
    assert missing == {"piece81", "piece85", "piece86", "piece96"}
    # bars: 150 MIDI files match `measures` (an extra downbeat exactly at the end is not a bar), 50 spread evenly
    assert counts["bar_times"] == {"midi": 150, "even": 50}
    split = counts["split"]
    assert split["pieces"] == {"train": 150, "validation": 20, "test": 30}
    assert split["listeners"] == {"train": 1970, "validation": 187, "test": 290, "mixed": 452}
    assert len(rows["dmer"]) == 200 and len(rows["records"]) == 6105 - 128


def test_crowd_reference_of_the_other_listeners(built):
    from dsaml.evaluation.references import CrowdReferences, references_for

    reference = references_for(built)
    assert isinstance(reference, CrowdReferences) and reference.counts["A"] == 3
    # A.mid: listener 1 rated 0.1 / 0.2 / 0.3 per measure (14 frames), listeners 6 and 7 a constant 0.6 and 0.7;
    # the crowd counts listener 1 whether or not `pdmer` keeps them, so their others' mean is 0.65
    own = np.repeat(np.float32([0.1] * 5 + [0.2] * 5 + [0.3] * 4)[:, None], 2, axis=1)
    listener = type("Song", (), {"song_id": "A", "start_step": 2, "num_steps": 10, "labels": own[2:12]})
    np.testing.assert_allclose(reference.curves([listener])["crowd"][0], np.full((10, 2), 0.65), atol=1e-6)
