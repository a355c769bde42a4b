"""PMEmo2019 builder: averaged curves (dmer), per-subject curves (pdmer) when present, raw [0, 1] values."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fixtures_data import build_pmemo_source, hf_cache, pmemo_source  # noqa: F401  (pytest fixtures)

from dsaml.data.datasets import dataset_metadata, load_dmer, load_pdmer
from dsaml.datasets_scripts import DatasetBuildError, build_pmemo
from dsaml.datasets_scripts.pmemo.pmemo import UNANNOTATED_IDS


@pytest.fixture(scope="module")
def pmemo_built(pmemo_source, tmp_path_factory):
    return build_pmemo(pmemo_source[0], tmp_path_factory.mktemp("pmemo") / "out")


def _averaged(source) -> pd.DataFrame:
    return pd.read_csv(source / "PMEmo2019" / "annotations" / "dynamic_annotations.csv")


def test_dmer_keeps_raw_values_and_reports_drops(pmemo_built, pmemo_source, tmp_path_factory):
    dmer = load_dmer(pmemo_built, cache_dir=hf_cache(tmp_path_factory))
    # 23 annotated songs - 23 (NaN inside) - 24 (value 1.2) - 22 (audio too short) - 21 (no audio) = 19
    assert {k: v.num_rows for k, v in dmer.items()} == {"train": 14, "validation": 1, "test": 4}
    rows = {r["song_id"]: r for split in dmer.values() for r in split}
    assert not {"21", "22", "23", "24"} & set(rows)
    source = _averaged(pmemo_source[0])
    song = source[source.musicId == 7].sort_values("frameTime")
    row = rows["7"]
    assert row["start_seconds"] == 15.0 and row["frame_rate"] == 2.0 and row["annotator"] == "average"
    np.testing.assert_allclose(row["arousal"], song["Arousal(mean)"].to_numpy(np.float32), atol=1e-6)
    np.testing.assert_allclose(row["valence"], song["Valence(mean)"].to_numpy(np.float32), atol=1e-6)
    assert row["audio"] == "audio/7.mp3"

    report = json.loads((pmemo_built / "build_report.json").read_text())
    assert report["value_range"] == [0.0, 1.0]
    dropped = {s: {d["reason"]: d["count"] for d in items} for s, items in report["dropped"].items()}
    assert dropped["dmer"] == {"NaN inside curve": 1, "value outside [0, 1]": 1, "audio missing": 1,
                               "audio shorter than annotation": 1}
    # clips 11 and 64 are among the 27 unannotated PMEmo clips: a filter, not a problem
    assert dropped["songs"] == {"clip without dynamic annotations (one of the 27 clips shorter than 15.5 s)": 2}
    assert {"11", "64"} <= UNANNOTATED_IDS and len(UNANNOTATED_IDS) == 27
    card = (pmemo_built / "README.md").read_text()
    assert "**Value range: [0, 1]**" in card and "not rescaled" in card


def test_pdmer_from_per_subject_annotations(pmemo_built, tmp_path_factory):
    cache = hf_cache(tmp_path_factory)
    pdmer = load_pdmer(pmemo_built, "pdmer", cache_dir=cache)
    assert sorted(pdmer) == ["annotator_S1", "annotator_S2"]  # S3 rated 4 songs: below 16
    assert pdmer["annotator_S1"].num_rows == 18 and pdmer["annotator_S2"].num_rows == 17
    flat = load_pdmer(pmemo_built, cache_dir=cache)
    assert sum(s.num_rows for s in flat.values()) == 35
    report = json.loads((pmemo_built / "build_report.json").read_text())
    pdmer_drops = {d["reason"]: d["count"] for d in report["dropped"]["pdmer"]}
    assert pdmer_drops["duplicate rater"] == 1  # S2's repeated row on song 2: the first kept
    s2_song2 = next(r for r in pdmer["annotator_S2"] if r["song_id"] == "2")
    assert len(s2_song2["arousal"]) == 41


def test_listener_partition_and_rescaling(pmemo_source, tmp_path, tmp_path_factory):
    out = build_pmemo(pmemo_source[0], tmp_path / "out", min_songs_per_annotator=1, test_annotator_fraction=0.34,
                      rescale_to_minus1_1=True, seed=3)
    flat = load_pdmer(out, cache_dir=hf_cache(tmp_path_factory))
    assert set(flat) == {"train", "test"}
    test_subjects = set(flat["test"]["annotator"])
    assert len(test_subjects) == 1 and not test_subjects & set(flat["train"]["annotator"])  # unseen listeners
    values = np.concatenate([np.asarray(a) for split in flat.values() for a in split["arousal"]])
    assert values.min() >= -1 and values.max() <= 1 and values.min() < 0  # rescaled from [0, 1]
    dmer = load_dmer(out, cache_dir=hf_cache(tmp_path_factory))
    source = _averaged(pmemo_source[0])
    row = next(r for split in dmer.values() for r in split if r["song_id"] == "5")
    expected = source[source.musicId == 5].sort_values("frameTime")["Arousal(mean)"].to_numpy() * 2 - 1
    np.testing.assert_allclose(row["arousal"], expected, atol=1e-5)
    assert dataset_metadata(out)["value_range"] == [-1.0, 1.0]


def test_without_per_subject_data_only_dmer(tmp_path, tmp_path_factory):
    source = tmp_path / "src"
    build_pmemo_source(source, tmp_path / "cache", per_subject=False)
    out = build_pmemo(source / "PMEmo2019", tmp_path / "out")  # the PMEmo2019 folder itself also works
    assert sorted(json.loads((out / "build_report.json").read_text())["configs"]) == ["dmer"]
    with pytest.raises(DatasetBuildError, match="no per-annotator data"):
        build_pmemo(source, tmp_path / "out2", configs=["pdmer"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetBuildError, match="dynamic_annotations.csv not found; searched"):
        build_pmemo(tmp_path / "empty", tmp_path / "out3")
    with pytest.raises(DatasetBuildError, match="is not a folder"):
        build_pmemo(tmp_path / "missing", tmp_path / "out4")


def test_pmemo_features_and_strict(pmemo_source, tmp_path, tmp_path_factory):
    import shutil

    source = tmp_path / "src"
    shutil.copytree(pmemo_source[0], source, symlinks=True)
    averaged = _averaged(source)
    rows = []
    for song, group in averaged.groupby("musicId"):
        for t in np.arange(0, group.frameTime.max() + 0.5, 0.5):
            rows.append({"musicId": song, "frameTime": t, **{f"f{i}": t + i for i in range(4)}})
    (source / "PMEmo2019" / "features").mkdir()
    pd.DataFrame(rows).to_csv(source / "PMEmo2019" / "features" / "dynamic_features.csv", index=False)
    out = build_pmemo(source, tmp_path / "out", include_features=True, configs=["dmer"])
    dmer = load_dmer(out, split="train", cache_dir=hf_cache(tmp_path_factory))
    row = dmer[0]
    features = np.asarray(row["features"])
    assert features.shape == (len(row["arousal"]), 4)
    np.testing.assert_allclose(features[:, 0], 15.0 + np.arange(len(row["arousal"])) / 2)
    with pytest.raises(DatasetBuildError, match="song 23: NaN inside curve"):
        build_pmemo(source, tmp_path / "strict", strict=True)
