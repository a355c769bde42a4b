"""Installing dsaml never replaces a user's torch: ranges in pyproject.toml, one pinned known-good set in CI."""

from __future__ import annotations


def test_dependencies_are_ranges_and_ci_pins_one_set():
    from pathlib import Path

    import pytest

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    root = Path(__file__).resolve().parents[1]
    deps = {d.split(">")[0].split("<")[0].split("=")[0].strip(): d
            for d in tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]}
    for name in ("torch", "torchaudio", "huggingface-hub"):
        assert "==" not in deps[name] and "<" in deps[name], deps[name]  # installing dsaml never replaces torch
    pins = dict(line.split("==") for line in (root / ".ci" / "constraints.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    assert pins["torch"] == "2.14.1" and pins["torchaudio"] == "2.11.0"
    assert "-c .ci/constraints.txt" in (root / ".ci" / "install").read_text()
