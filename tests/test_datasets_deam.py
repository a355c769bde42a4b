"""DEAM builder: the official layout in, a load_dataset-able folder out, every defect reported."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from datasets import load_dataset
from fixtures_data import (  # noqa: F401  (pytest fixtures)
    DEAM_AVERAGED,
    audio_copy,
    curve,
    deam_built,
    deam_source,
    hf_cache,
    require_shared_data,
    wide_csv,
)

from dsaml.audio.reader import load_audio
from dsaml.data.datasets import dataset_metadata, load_dmer, load_pdmer, resolve_audio
from dsaml.datasets_scripts import DatasetBuildError, build_deam
from dsaml.datasets_scripts.deam.deam import find_layout


def _dropped(folder: Path) -> dict[str, dict[str, int]]:
    report = json.loads((folder / "build_report.json").read_text())
    return {scope: {d["reason"]: d["count"] for d in items} for scope, items in report["dropped"].items()}


def test_dmer_splits_and_values(deam_built, deam_source, tmp_path_factory):
    dmer = load_dmer(deam_built, cache_dir=hf_cache(tmp_path_factory))
    assert set(dmer) == {"train", "validation", "test"}
    # 20 good train songs (1001-1020); 1021-1025 dropped; test: 2001-2003 and 2004 (trimmed to 79 frames)
    assert dmer["train"].num_rows + dmer["validation"].num_rows == 20
    assert dmer["validation"].num_rows == 1  # round(0.05 * 20)
    test = {row["song_id"]: row for row in dmer["test"]}
    assert {s: len(r["arousal"]) for s, r in test.items()} == {"2001": 64, "2002": 70, "2003": 75, "2004": 79}
    for row in dmer["train"]:
        assert len(row["arousal"]) == len(row["valence"]) == 60
        assert row["annotator"] == "average" and row["partition"] == "train" and row["annotator_info"] == "{}"
        assert row["start_seconds"] == 15.0 and row["frame_rate"] == 2.0
    assert all(int(s) > 2000 for s in test)
    assert all(r["partition"] == "validation" for r in dmer["validation"])
    # values round-trip (float32) from the spaced-out arousal.csv
    row = dmer["train"][3]
    expected = curve(60, int(row["song_id"]) - 1001)
    np.testing.assert_allclose(row["arousal"], np.float32([float(f"{v:.6g}") for v in expected]), atol=1e-6)
    # the audio column points at the copied file inside the folder
    assert row["audio"] == f"audio/{row['song_id']}.mp3"
    wave, rate = load_audio(resolve_audio(deam_built, row["audio"]))
    assert rate == 8000 and wave.size > 44 * 8000


def test_every_defect_is_reported(deam_built):
    dropped = _dropped(deam_built)
    assert dropped["dmer"] == {
        "NaN inside curve": 1,
        "malformed row": 1,
        "value outside [-1, 1]": 2,
        "audio missing": 1,
        "audio shorter than annotation": 1,
    }
    pdmer = dropped["pdmer"]
    assert pdmer["duplicate rater"] == 1
    assert pdmer["per-rater file without WorkerId column"] == 2
    assert pdmer["song id <= 1000 (not personalized in the official protocol)"] == 1
    assert pdmer["flat curve (mean absolute deviation < 0.01 over the first 60 frames)"] == 1
    assert pdmer["annotator with fewer than 16 songs in its partition"] == 5 + 3  # C3's 5 + T1's 3 rows
    report = json.loads((deam_built / "build_report.json").read_text())
    assert report["notes"] == [{"reason": "arousal/valence differ by <= 2 frames at the end: trimmed to the shorter",
                                "count": 1}]
    examples = report["examples"]
    assert any("song 1021" in e and "arousal.csv, line" in e for e in examples["NaN inside curve"])
    # a bad value is reported against the file that holds it
    outside = examples["value outside [-1, 1]"]
    assert any("song 1022" in e and "arousal.csv" in e and "valence.csv" not in e for e in outside), outside
    assert any("song 1026" in e and "valence.csv" in e and "arousal.csv" not in e for e in outside), outside
    assert any("song 1024" in e and "audio lasts 20.0 s" in e for e in examples["audio shorter than annotation"])
    assert any("annotator A1" in e for e in examples["duplicate rater"])
    card = (deam_built / "README.md").read_text()
    assert "dmer: dropped 1 x audio missing (problem)" in card
    assert "non-commercial research" in card


def test_pdmer_one_split_per_annotator(deam_built, deam_source, tmp_path_factory):
    cache = hf_cache(tmp_path_factory)
    pdmer = load_dataset(str(deam_built), "pdmer", cache_dir=cache)
    assert sorted(pdmer) == ["annotator_A1", "annotator_B_2"]  # "B-2" sanitized; C3/T1 too few songs
    a1 = pdmer["annotator_A1"]
    assert a1.num_rows == 18 and set(a1["annotator"]) == {"A1"} and set(a1["partition"]) == {"train"}
    b2 = pdmer["annotator_B_2"]
    assert set(b2["annotator"]) == {"B-2"} and b2.num_rows == 16 and "1003" not in b2["song_id"]
    first = next(r for r in a1 if r["song_id"] == "1001")  # the duplicated rater: first row kept
    np.testing.assert_allclose(first["arousal"], deam_source[1]["first_A1_1001"][0], atol=1e-5)
    flat = load_pdmer(deam_built, "pdmer_flat", cache_dir=cache)
    assert list(flat) == ["train"] and flat["train"].num_rows == 34
    one = load_pdmer(deam_built, "pdmer", split="annotator_B_2", cache_dir=cache)
    assert one.num_rows == 16


def test_filters_and_protocol_options(deam_source, tmp_path, tmp_path_factory):
    out = build_deam(deam_source[0], tmp_path / "out", min_songs_per_annotator=1, flatness_threshold=0,
                     include_average_annotator=True, official_song_ranges=False, configs=["pdmer", "pdmer_flat"])
    cache = hf_cache(tmp_path_factory)
    flat = load_pdmer(out, "pdmer_flat", cache_dir=cache)
    test = flat["test"]
    assert set(test["partition"]) == {"test"}
    assert {(r["annotator"], r["song_id"]) for r in test if r["annotator"] == "T1"} == {
        ("T1", "2001"), ("T1", "2002"), ("T1", "2003")}
    train = flat["train"]
    annotators = set(train["annotator"])
    assert {"A1", "B-2", "C3", "Z9", "average"} <= annotators
    assert "1003" in [r["song_id"] for r in train if r["annotator"] == "B-2"]  # flatness filter off
    info = json.loads(next(r for r in train if r["annotator"] == "average")["annotator_info"])
    assert info["pseudo_annotator"] is True
    assert not (out / "dmer").exists() and "dmer" not in json.loads((out / "build_report.json").read_text())["configs"]


def test_strict_mode_names_file_and_song(deam_source, tmp_path):
    with pytest.raises(DatasetBuildError, match=r"arousal\.csv, line \d+, song 1021: empty value at frame 10"):
        build_deam(deam_source[0], tmp_path / "strict", strict=True)


def test_songs_without_audio_can_be_kept_for_labels(deam_source, tmp_path, tmp_path_factory):
    out = build_deam(deam_source[0], tmp_path / "labels", require_audio=False, configs=["dmer"])
    rows = load_dmer(out, cache_dir=hf_cache(tmp_path_factory))
    by_song = {r["song_id"]: r for split in rows.values() for r in split}
    assert by_song["1025"]["audio"] == ""
    assert dataset_metadata(out)["songs_without_audio"] == 1
    assert "Songs without audio" in (out / "README.md").read_text()


def test_reference_mode_stores_absolute_paths(deam_source, tmp_path):
    out = build_deam(deam_source[0], tmp_path / "ref", audio_mode="reference", configs=["dmer"])
    table = pd.read_parquet(out / "dmer" / "train-00000-of-00001.parquet")
    assert all(os.path.isabs(p) and Path(p).is_file() for p in table["audio"])
    assert not (out / "audio").exists()
    assert str(table["arousal"].iloc[0].dtype) == "float32"


def test_layout_variants_and_missing_parts(deam_source, tmp_path):
    # the annotations folder itself as source, audio not beside it: labels only
    layout = find_layout(deam_source[0] / "DEAM_Annotations")
    assert layout.averaged_arousal.name == "arousal.csv" and layout.audio is None and layout.per_rater is not None
    with pytest.raises(DatasetBuildError, match=r"(?s)DEAM audio folder not found.*searched:.*MEMD_audio"):
        build_deam(deam_source[0] / "DEAM_Annotations", tmp_path / "x")
    # DEAM_audio/MEMD_audio (how the audio archive unpacks) is found too
    nested = tmp_path / "nested"
    shutil.copytree(deam_source[0] / "DEAM_Annotations", nested / "DEAM_Annotations")
    (nested / "DEAM_audio").mkdir()
    os.symlink(deam_source[0] / "MEMD_audio", nested / "DEAM_audio" / "MEMD_audio")
    assert find_layout(nested).audio == (deam_source[0] / "MEMD_audio").resolve()
    with pytest.raises(DatasetBuildError, match=r"not found; searched:\n.*DEAM_Annotations/annotations/annotations averaged"):
        find_layout(tmp_path)


def test_bad_header_and_output_folder_rules(tmp_path, deam_source):
    source = tmp_path / "src"
    wide_csv(source / DEAM_AVERAGED / "arousal.csv", "song_id", [("1", curve(60, 0))])
    (source / DEAM_AVERAGED / "valence.csv").write_text("song_id,when,sample_15500ms\n1,0.1,0.2\n")
    with pytest.raises(DatasetBuildError, match=r"valence\.csv: header column 'when'"):
        build_deam(source, tmp_path / "out", require_audio=False)

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(DatasetBuildError, match="not empty"):
        build_deam(deam_source[0], foreign, configs=["dmer"])
    with pytest.raises(DatasetBuildError, match="not written by dsaml"):
        build_deam(deam_source[0], foreign, configs=["dmer"], overwrite=True)

    out = build_deam(deam_source[0], tmp_path / "again", configs=["dmer"], validation_fraction=0)
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "audio", "build_report.json", "dmer"]
    rebuilt = build_deam(deam_source[0], out, overwrite=True, configs=["pdmer_flat"])
    assert not (rebuilt / "dmer").exists() and (rebuilt / "pdmer_flat").is_dir()
    assert len(list((rebuilt / "audio").iterdir())) == 18  # only the songs the new rows use


def test_opensmile_features_are_aligned(tmp_path, tmp_path_factory):
    source = tmp_path / "deam"
    songs = {"1001": 60, "2001": 66}
    wide_csv(source / DEAM_AVERAGED / "arousal.csv", "song_id", [(s, curve(n, 1)) for s, n in songs.items()])
    wide_csv(source / DEAM_AVERAGED / "valence.csv", "song_id", [(s, curve(n, 2)) for s, n in songs.items()])
    for song, n in songs.items():
        audio_copy(source / "MEMD_audio" / f"{song}.mp3", 15.0 + n / 2 + 0.2, tmp_path / "cache")
        times = np.arange(0, 15.0 + n / 2, 0.5)[: -1 if song == "2001" else None]  # 2001 stops one frame early
        frame = pd.DataFrame(np.tile(times[:, None] * 10, (1, 260)), columns=[f"f{i}" for i in range(260)])
        frame.insert(0, "frameTime", times)
        (source / "DEAM_features").mkdir(exist_ok=True)
        frame.to_csv(source / "DEAM_features" / f"{song}.csv", sep=";", index=False)
    out = build_deam(source, tmp_path / "out", include_features=True, validation_fraction=0)
    dmer = load_dmer(out, cache_dir=hf_cache(tmp_path_factory))
    assert dmer["train"].features["features"].feature.feature.dtype == "float32"
    row = dmer["train"][0]
    features = np.asarray(row["features"])
    assert features.shape == (60, 260)
    np.testing.assert_allclose(features[:, 0], (15.0 + np.arange(60) / 2) * 10)
    test = dmer["test"][0]
    assert len(test["arousal"]) == len(test["features"]) == 65  # trimmed to the last feature frame
    assert "labels trimmed to the last feature frame" in (out / "README.md").read_text()


@pytest.mark.shared_data
def test_real_deam_averaged_annotations_end_to_end(tmp_path, tmp_path_factory):
    """The real averaged DEAM annotations (1802 songs) and the ten real MP3 clips, in the official layout."""
    shared = require_shared_data()
    averaged = shared / "deam" / "averaged_dynamic_from_consensus-entropy"
    clips = shared / "deam" / "emoMusic1000_dev744_from_audiologic" / "audio_mp3_sample"
    source = tmp_path / "DEAM"
    (source / DEAM_AVERAGED).mkdir(parents=True)
    for name in ("arousal.csv", "valence.csv"):
        os.symlink(averaged / name, source / DEAM_AVERAGED / name)
    (source / "MEMD_audio").mkdir()
    for clip in clips.glob("*.mp3"):
        os.symlink(clip, source / "MEMD_audio" / clip.name)

    def lengths(name):
        with open(averaged / name, newline="") as handle:
            reader = csv.reader(handle)
            next(reader)
            return {row[0].strip(): sum(1 for c in row[1:] if c.strip()) for row in reader}

    arousal, valence = lengths("arousal.csv"), lengths("valence.csv")
    expected_test = {s: min(n, valence[s]) for s, n in arousal.items() if int(s) > 2000}

    # Every song, labels only: the 10 songs with a clip get their audio (copied and checked), the rest "".
    out = build_deam(source, tmp_path / "all", require_audio=False)
    dmer = load_dmer(out, cache_dir=hf_cache(tmp_path_factory))
    assert sum(split.num_rows for split in dmer.values()) == 1802
    train_like = [len(a) for name in ("train", "validation") for a in dmer[name]["arousal"]]
    assert len(train_like) == 1744 and set(train_like) == {60}
    assert dmer["validation"].num_rows == round(0.05 * 1744)
    test = {r["song_id"]: len(r["arousal"]) for r in dmer["test"]}
    assert len(test) == 58 and test == expected_test and max(test.values()) == 1223
    with_audio = [r for split in dmer.values() for r in split if r["audio"]]
    assert sorted(int(r["song_id"]) for r in with_audio) == [2, 3, 4, 5, 7, 8, 10, 12, 13, 17]

    # Audio required: the 10 clips only, the rest counted as missing audio.
    out = build_deam(source, tmp_path / "audio", configs=["dmer"])
    assert _dropped(out)["dmer"] == {"audio missing": 1792}
    dmer = load_dmer(out, cache_dir=hf_cache(tmp_path_factory))
    row = dmer["train"][0]
    wave, rate = load_audio(resolve_audio(out, row["audio"]))
    assert rate == 44100 and wave.size / rate >= row["start_seconds"] + len(row["arousal"]) / row["frame_rate"] - 0.5
