"""The synthetic PDMER set: determinism, configs, real audio, personalization signal, cache, `dsaml prepare` + Hub."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
from hub_mocks import TEST_TOKEN

import dsaml.datasets_scripts.synthetic.synthetic as synthetic
from dsaml.audio.reader import load_audio
from dsaml.data.datasets import (
    annotator_split_name,
    dataset_root,
    default_synthetic_dataset,
    load_dmer,
    load_pdmer,
    resolve_audio,
)
from dsaml.datasets_scripts import build_synthetic

# a reduced spec (3 short songs, 3 listeners) for the tests that build several folders
REDUCED = dict(num_songs=3, num_annotators=3, song_seconds=(6.0, 6.0))


@pytest.fixture(scope="module")
def tiny(synthetic_tiny) -> Path:
    """The `tiny` preset through the public entry point, with the package cache in a temporary folder."""
    return synthetic_tiny


@pytest.fixture(scope="module")
def ds_cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("hf-datasets-cache"))


def _folder_content(folder: Path) -> tuple[dict, dict]:
    """(parquet relative path -> rows, audio relative path -> bytes)."""
    tables = {p.relative_to(folder).as_posix(): pq.read_table(p).to_pylist() for p in sorted(folder.rglob("*.parquet"))}
    audio = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted((folder / "audio").iterdir())}
    return tables, audio


def test_deterministic_from_seed(tmp_path):
    a = build_synthetic(tmp_path / "a", size="tiny", seed=3, **REDUCED)
    b = build_synthetic(tmp_path / "b", size="tiny", seed=3, **REDUCED)
    c = build_synthetic(tmp_path / "c", size="tiny", seed=4, **REDUCED)
    tables_a, audio_a = _folder_content(a)
    tables_b, audio_b = _folder_content(b)
    tables_c, audio_c = _folder_content(c)
    assert tables_a and len(audio_a) == 3
    assert tables_a == tables_b
    assert audio_a == audio_b
    assert (a / "README.md").read_text() == (b / "README.md").read_text()
    # another seed: other curves and other audio for the same song ids
    assert set(audio_a) == set(audio_c)
    assert all(audio_a[name] != audio_c[name] for name in audio_a)
    flat = "pdmer_flat/train-00000-of-00001.parquet"
    curves_a = {(r["song_id"], r["annotator"]): r["arousal"] for r in tables_a[flat]}
    curves_c = {(r["song_id"], r["annotator"]): r["arousal"] for r in tables_c[flat]}
    assert curves_a != curves_c


def test_configs_consistent(tiny, ds_cache):
    spec = synthetic.spec_for("tiny")
    pdmer = load_pdmer(tiny, "pdmer", cache_dir=ds_cache)
    flat = load_pdmer(tiny, "pdmer_flat", cache_dir=ds_cache)
    dmer = load_dmer(tiny, cache_dir=ds_cache)

    flat_rows = [row for split in flat.values() for row in split]
    annotators = sorted({row["annotator"] for row in flat_rows})
    assert len(annotators) == spec.num_annotators
    # one pdmer split per annotator, holding exactly that annotator's rows of pdmer_flat
    assert set(pdmer) == {annotator_split_name(a) for a in annotators}
    for annotator in annotators:
        split = pdmer[annotator_split_name(annotator)]
        assert set(split["annotator"]) == {annotator}
        expected = sorted((r["song_id"], r["partition"], tuple(r["arousal"]), tuple(r["valence"]))
                          for r in flat_rows if r["annotator"] == annotator)
        got = sorted((r["song_id"], r["partition"], tuple(r["arousal"]), tuple(r["valence"])) for r in split)
        assert got == expected
        assert len(got) == spec.songs_per_annotator[0]
    # pdmer_flat: train / test = meta-train / held-out listeners, never both for one listener
    assert set(flat) == {"train", "test"}
    test_listeners = set(flat["test"]["annotator"])
    assert test_listeners and not test_listeners & set(flat["train"]["annotator"])
    # dmer: each song's mean over the meta-train listeners who rated it
    train_curves = defaultdict(list)
    for row in flat["train"]:
        train_curves[row["song_id"]].append((row["arousal"], row["valence"]))
    dmer_rows = [row for split in dmer.values() for row in split]
    assert {row["song_id"] for row in dmer_rows} == set(train_curves)
    for row in dmer_rows:
        curves = np.asarray(train_curves[row["song_id"]], dtype=np.float32)
        np.testing.assert_allclose(row["arousal"], curves[:, 0].mean(axis=0), atol=1e-6)
        np.testing.assert_allclose(row["valence"], curves[:, 1].mean(axis=0), atol=1e-6)
        assert row["annotator"] == "average"
    # every listener's info is JSON with a known style
    for row in flat_rows:
        assert json.loads(row["annotator_info"])["style"] in synthetic.STYLES


def test_real_audio(tiny, ds_cache):
    flat = load_pdmer(tiny, "pdmer_flat", split="train", cache_dir=ds_cache)
    seen = {}
    for row in flat:
        seen.setdefault(row["song_id"], row)
    assert len(seen) == synthetic.spec_for("tiny").num_songs
    for song_id, row in seen.items():
        path = resolve_audio(tiny, row["audio"])
        assert path.suffix == ".flac"
        waveform, rate = load_audio(path)  # raises on silence / NaN / undecodable
        assert rate == synthetic.SAMPLE_RATE
        frames = len(row["arousal"])
        assert abs(waveform.size / rate - frames / row["frame_rate"]) < 0.5  # audio covers the labels
        rms = float(np.sqrt(np.mean(waveform**2)))
        assert 1e-3 < rms < 0.9
        # the controls change over the song: the level of its 0.5 s frames varies by more than 1 dB
        frames_rms = np.sqrt(np.mean(waveform[: frames * rate // 2].reshape(frames, -1) ** 2, axis=1))
        assert np.ptp(20 * np.log10(frames_rms + 1e-9)) > 1.0


def test_one_song_tells_about_the_listener(tiny, ds_cache):
    """Per-listener curves deviate from the population so that ONE song is enough to correct for part of it.

    Population curve of a song = the mean over all listeners of that song (from the data). A listener's
    deviation from it is fitted on one support song as an affine function of the song's four musical controls
    (tempo, loudness, brightness, mode: what the audio carries; ridge 1.0), then applied to that listener's other
    songs. Averaged over every choice of support song, this lowers the RMSE for EVERY listener.

    (An affine map of the population curve itself does not help on this data: listeners re-weight the
    controls, e.g. `inverted_valence`, `tempo_arousal`, so their offset from the population depends on the song.)
    """
    flat = load_pdmer(tiny, "pdmer_flat", cache_dir=ds_cache)
    rows = [row for split in flat.values() for row in split]
    plans = {p.song_id: p for p in synthetic.song_plans(synthetic.spec_for("tiny"), 0)}

    def design(song_id: str) -> np.ndarray:
        f = synthetic.frame_features(plans[song_id])
        return np.stack([f["tempo"], f["loudness"], f["brightness"], f["mode"], np.ones_like(f["mode"])], axis=1)

    population = {}
    for dim in ("arousal", "valence"):
        by_song = defaultdict(list)
        for row in rows:
            by_song[row["song_id"]].append(row[dim])
        population.update({(s, dim): np.mean(np.asarray(c, dtype=np.float64), axis=0) for s, c in by_song.items()})
    by_listener = defaultdict(list)
    for row in rows:
        by_listener[row["annotator"]].append(row)

    gains = {}
    for listener, songs in by_listener.items():
        base, personal = [], []
        for dim in ("arousal", "valence"):
            for support in songs:
                x = design(support["song_id"])
                assert x.shape[0] == len(support[dim])
                residual = np.asarray(support[dim]) - population[(support["song_id"], dim)]
                w = np.linalg.solve(x.T @ x + 1.0 * np.eye(x.shape[1]), x.T @ residual)
                for query in songs:
                    if query is support:
                        continue
                    y = np.asarray(query[dim])
                    p = population[(query["song_id"], dim)]
                    base.append(np.mean((p - y) ** 2))
                    personal.append(np.mean((p + design(query["song_id"]) @ w - y) ** 2))
        gains[listener] = 1 - np.sqrt(np.mean(personal)) / np.sqrt(np.mean(base))
    assert all(g > 0.05 for g in gains.values()), gains
    assert np.mean(list(gains.values())) > 0.2, gains
    # and listeners really differ from the population (otherwise there is nothing to personalize)
    assert np.mean([np.sqrt(np.mean((np.asarray(r["valence"]) - population[(r["song_id"], "valence")]) ** 2))
                    for r in rows]) > 0.1


def test_cache_reuse_and_half_built_folder(tmp_path, monkeypatch):
    calls = []
    real_build = synthetic.build_synthetic

    def spy(output, **kwargs):  # the real builder, on the reduced spec (fast)
        calls.append(output)
        return real_build(output, **kwargs, **REDUCED)

    import dsaml.data.datasets

    monkeypatch.setattr(dsaml.data.datasets, "build_synthetic", spy)
    monkeypatch.setenv("DSAML_CACHE", str(tmp_path / "cache"))
    first = dataset_root("synthetic:tiny:5")
    assert len(calls) == 1 and (first / "README.md").is_file()
    assert first.name == f"synthetic-tiny-seed5-v{synthetic.GENERATOR_VERSION}"
    stamp = (first / "README.md").stat().st_mtime_ns
    again = default_synthetic_dataset(size="tiny", seed=5)
    assert again == first and len(calls) == 1 and (first / "README.md").stat().st_mtime_ns == stamp
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".")]  # no staging leftovers

    # an interrupted build leaves a folder without README: it is rebuilt, not trusted
    half = first.parent / f"synthetic-tiny-seed6-v{synthetic.GENERATOR_VERSION}"
    (half / "pdmer").mkdir(parents=True)
    (half / "pdmer" / "junk.parquet").write_bytes(b"truncated")
    rebuilt = default_synthetic_dataset(size="tiny", seed=6)
    assert rebuilt == half and len(calls) == 2
    assert (half / "README.md").is_file() and not (half / "pdmer" / "junk.parquet").exists()
    with pytest.raises(ValueError):
        default_synthetic_dataset(size="huge")


def _token_free(root: Path) -> None:
    token = TEST_TOKEN.encode()
    for path in root.rglob("*"):
        if path.is_file():
            assert token not in path.read_bytes(), f"token written to {path}"


def test_prepare_push_to_hub_and_load_back(hub_uploads, tmp_path, capsys, caplog, ds_cache):
    from dsaml.commands.prepare import main

    output = tmp_path / "synthetic"
    with caplog.at_level("DEBUG"):
        code = main(["synthetic", "--size", "tiny", "--output", str(output), "--quiet", "--push-to-hub", "user/pdmer"])
    assert code == 0
    printed = capsys.readouterr()
    assert "pushed to" in printed.out
    assert TEST_TOKEN not in printed.out + printed.err + caplog.text

    assert hub_uploads.created == [{"repo_id": "user/pdmer", "repo_type": "dataset", "private": False,
                                    "exist_ok": True}]
    assert "https://huggingface.co/datasets/user/pdmer" in printed.out
    files = hub_uploads.files("user/pdmer", repo_type="dataset")
    local = {p.relative_to(output).as_posix(): p.read_bytes() for p in output.rglob("*") if p.is_file()}
    assert files == local  # the folder as is, audio included
    assert "README.md" in files and "build_report.json" in files
    card = files["README.md"].decode()
    assert card.startswith("---") and "configs:" in card and "config_name: pdmer" in card
    assert sum(name.startswith("audio/") and name.endswith(".flac") for name in files) == 8
    assert sum(name.startswith("pdmer/") and name.endswith(".parquet") for name in files) == 6

    # read back as a snapshot of the repo: the package's own entry point (Parquet + audio) and audio resolution
    root = dataset_root("user/pdmer")
    pdmer = datasets.load_dataset(str(root), "pdmer", cache_dir=str(tmp_path / "hf-cache"))
    assert len(pdmer) == 6 and all(name.startswith("annotator_") for name in pdmer)
    local_pdmer = load_pdmer(output, "pdmer", cache_dir=ds_cache)
    for name, split in pdmer.items():
        assert split.to_list() == local_pdmer[name].to_list()
    row = load_pdmer(root, "pdmer_flat", split="train", cache_dir=ds_cache)[0]
    waveform, rate = load_audio(resolve_audio(root, row["audio"]))
    assert rate == synthetic.SAMPLE_RATE and waveform.size > 0

    _token_free(output)
    _token_free(tmp_path)


def test_resolve_audio_follows_cache_symlinks_but_not_dotdot(tmp_path):
    from dsaml.errors import AudioError

    blobs, snapshot = tmp_path / "blobs", tmp_path / "snapshots" / "abc"
    blobs.mkdir()
    (snapshot / "audio").mkdir(parents=True)
    (blobs / "1234").write_bytes(b"x")
    (snapshot / "audio" / "S0.flac").symlink_to(blobs / "1234")  # how the Hub cache lays out a snapshot
    assert resolve_audio(snapshot, "audio/S0.flac") == snapshot / "audio" / "S0.flac"
    with pytest.raises(AudioError, match="escapes"):
        resolve_audio(snapshot, "../../blobs/1234")


def test_small_partitions_are_stratified_and_fixed():
    """The small preset's splits (fixed before any modelling): the version-1 listeners keep their train/test
    assignment, every style is in validation, test and test_unseen, and unseen songs are heard only there."""
    spec = synthetic.spec_for("small")
    plans, people, pdmer, dmer = synthetic.generate_records(spec, 0)
    listeners = defaultdict(dict)
    songs = defaultdict(set)
    for record in pdmer:
        listeners[record.partition][record.annotator] = record.annotator_info["style"]
        songs[record.partition].add(record.song_id)
    assert {p: len(a) for p, a in listeners.items()} == {"train": 18, "test": 11, "validation": 10, "test_unseen": 10}
    for partition in ("validation", "test", "test_unseen"):
        assert set(listeners[partition].values()) == set(synthetic.STYLES), partition
    # version 1's held-out listeners are still the first test listeners, with the same styles
    v1 = synthetic.held_out([f"L{i:03d}" for i in range(24)], 0.25, 0, "synthetic-listeners")
    assert v1 <= set(listeners["test"]) and len(v1) == 6
    unseen = {p.song_id for p in plans[spec.num_songs:]}
    assert len(unseen) == 16 and songs["test_unseen"] == unseen
    assert not unseen & (songs["train"] | songs["validation"] | songs["test"])
    assert {r.song_id for r in dmer if r.partition == "test"} == unseen  # averaged test songs: never trained on
    assert not {r.song_id for r in dmer if r.partition != "test"} & unseen


def test_reference_curves_are_the_generator_without_noise():
    """Population emotion and the listener oracle, recomputed by hand from the formulas of the module doc."""
    spec = synthetic.spec_for("tiny")
    population, oracle = synthetic.reference_curves(spec, 0)
    plans, people, pdmer, _ = synthetic.generate_records(spec, 0)
    plan = plans[0]
    f = synthetic.frame_features(plan)
    g = lambda s, c: np.tanh(c * s) / np.tanh(c)  # noqa: E731
    arousal = 0.9 * g(0.45 * f["tempo"] + 0.35 * f["loudness"] + 0.20 * f["brightness"], 1.5)
    valence = 0.9 * g(0.60 * f["mode"] + 0.25 * f["brightness"] + 0.15 * f["tempo"], 1.5)
    np.testing.assert_allclose(population[plan.song_id], np.stack([arousal, valence], 1), atol=1e-12)
    record = next(r for r in pdmer if r.song_id == plan.song_id)
    person = next(p for p in people if p.annotator_id == record.annotator)
    w, lag = person.weights["valence"], person.lag_steps
    s = w[0] * f["mode"] + w[1] * f["brightness"] + w[2] * f["tempo"]
    heard = person.bias["valence"] + person.gain["valence"] * g(s, person.curvature["valence"])
    heard = np.concatenate([np.full(lag, heard[0]), heard[: len(heard) - lag]])
    np.testing.assert_allclose(oracle[(record.annotator, plan.song_id)][:, 1], np.clip(heard, -1, 1), atol=1e-12)
    # the annotation is the oracle plus the listener's small smooth noise
    residual = record.valence - oracle[(record.annotator, plan.song_id)][:, 1]
    assert 0.005 < np.sqrt((residual**2).mean()) < 0.2
