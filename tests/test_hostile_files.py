"""Hostile files: a dataset folder whose audio/ or config folder links out of it, and annotation files built to
make a parser allocate (NUL bytes, one long line, a million columns or rows, 1 GB), each refused in one line with
bounded memory, before the model loads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from untrusted import changed, one_line_error, setup, snapshot  # noqa: F401  (setup: a fixture)

from dsaml.cli import main as cli

# -- 2. prepare --overwrite never deletes outside its folder ---------------------------------------------------

def test_prepare_overwrite_deletes_nothing_a_tampered_report_points_outside(tmp_path):
    from dsaml.datasets_scripts import build_synthetic

    out, victim = tmp_path / "data", tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    reduced = dict(num_songs=3, num_annotators=3, song_seconds=(6.0, 6.0))
    build_synthetic(out, size="tiny", **reduced)
    report = json.loads((out / "build_report.json").read_text())
    configs = list(report["configs"])
    assert configs and all((out / c).is_dir() for c in configs)
    report["configs"].update({"../victim": {}, str(victim): {}, "..": {}, "": {}})
    (out / "build_report.json").write_text(json.dumps(report))
    (out / configs[0] / "stale.txt").write_text("from the previous build")
    build_synthetic(out, size="tiny", overwrite=True, **reduced)
    assert (victim / "precious.txt").read_text() == "keep me"
    assert all((out / c).is_dir() for c in configs) and not (out / configs[0] / "stale.txt").exists()


@pytest.mark.parametrize("linked", ["audio", "pdmer_flat", "listed_in_report"])
def test_prepare_overwrite_refuses_a_symlinked_folder_and_touches_nothing(tmp_path, capsys, linked):
    """A dataset folder whose `audio/` (or a config folder) is a link to the user's music: the rebuild would copy
    into it and delete every file there that is not a song of the set. Refused before anything is written."""
    from dsaml.datasets_scripts import build_synthetic

    out, music = tmp_path / "data", tmp_path / "Music"
    build_synthetic(out, size="tiny", num_songs=3, num_annotators=3, song_seconds=(6.0, 6.0))
    music.mkdir()
    for name in ("favourite_1.mp3", "favourite_2.mp3", "notes.txt"):
        (music / name).write_bytes(name.encode() * 100)
    (music / "live").mkdir()
    (music / "live" / "encore.mp3").write_bytes(b"x" * 1000)
    name = "linked" if linked == "listed_in_report" else linked
    if linked == "listed_in_report":
        report = json.loads((out / "build_report.json").read_text())
        report["configs"]["linked"] = {}
        (out / "build_report.json").write_text(json.dumps(report))
    elif (out / name).exists():
        shutil.rmtree(out / name)
    (out / name).symlink_to(Path("..") / "Music", target_is_directory=True)
    before_music, before_out = snapshot(music), snapshot(out)
    assert cli(["prepare", "synthetic", "--size", "tiny", "--output", str(out), "--overwrite", "--quiet"]) == 1
    one_line_error(capsys, f"{out / name} is a symbolic link", "never through a link")
    assert changed(before_music, snapshot(music)) == set()
    assert changed(before_out, snapshot(out)) == set()


# -- 3. annotation files of any size or shape: refused with bounded memory and time ----------------------------

ANNOTATION_BOMBS = {  # just under the size limit, each a different way to make a parser allocate
    "nul bytes": lambda n: b"\0" * n,
    "one long line": lambda n: b"1" * n,
    "a million columns": lambda n: b",".join([b"time"] * 1_000_000) + b"\n" + b"0" * (n - 5_000_000),
    "a million rows": lambda n: b"time,arousal,valence\n" + b"0,0,0\n" * ((n - 30) // 6),
}


def _capped(limit_bytes: int):
    """preexec_fn: the child's address space capped (memory that a parser would blow up hits the cap, not the
    machine)."""
    import resource

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    return apply


MEMORY_CAP = 4 << 30  # torch alone maps ~2.5 GB of address space; a parser reading 8 MB as data frames takes tens
STATED_LIMIT = 8 << 20  # the documented size limit of an annotation file (`dsaml.data.annotation_files.MAX_ANNOTATION_BYTES`)


@pytest.mark.parametrize("case", sorted(ANNOTATION_BOMBS))
def test_an_annotation_file_just_under_the_size_limit_is_refused_with_bounded_memory(tmp_path, case):
    path = tmp_path / "bomb.csv"
    path.write_bytes(ANNOTATION_BOMBS[case](STATED_LIMIT - 16))
    assert path.stat().st_size <= STATED_LIMIT
    code = ("import sys; from dsaml.data.annotation_files import read_annotations\n"
            "try:\n    read_annotations(sys.argv[1])\nexcept ValueError as exc:\n    print(exc)\n")
    run = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120,
                         preexec_fn=_capped(MEMORY_CAP))
    assert run.returncode == 0 and run.stderr == "", run.stderr[-2000:]
    assert run.stdout.startswith(f"{path}: "), run.stdout
    assert len(run.stdout.strip().splitlines()) == 1


def test_the_stated_annotation_size_limit_is_the_one_applied(tmp_path):
    from dsaml.data.annotation_files import MAX_ANNOTATION_BYTES, read_annotations

    assert MAX_ANNOTATION_BYTES == STATED_LIMIT
    path = tmp_path / "big.csv"
    with path.open("wb") as handle:
        handle.write(b"time,arousal,valence\n")
        handle.truncate(STATED_LIMIT + 1)
    with pytest.raises(ValueError, match=r"big\.csv: 8\.0 MiB is too large for an annotation \(at most 8 MiB"):
        read_annotations(path)


def test_a_1_gb_annotation_file_is_refused_before_the_model_loads(setup, tmp_path):
    huge = tmp_path / "x.csv"
    with huge.open("wb") as handle:
        handle.truncate(1 << 30)  # sparse: 1 GB of NUL bytes that take no disk
    audio, _ = setup["songs"]["song"]
    before = snapshot(tmp_path)
    run = subprocess.run([sys.executable, "-m", "dsaml.cli", "personalize", "--model", str(setup["model_dir"]),
                          "--audio", str(audio), "--annotations", str(huge), "--user", "u",
                          "--output", str(tmp_path / "adapters")], capture_output=True, text=True, timeout=120,
                         preexec_fn=_capped(MEMORY_CAP), env={**os.environ, "DSAML_DEBUG": ""})
    assert run.returncode == 1, run.stderr[-2000:]
    assert run.stderr.strip() == (f"dsaml personalize: error: {huge}: 1024.0 MiB is too large for an annotation (at "
                                  "most 8 MiB, 6 hours at 2 Hz)")
    assert changed(before, snapshot(tmp_path)) == set()
