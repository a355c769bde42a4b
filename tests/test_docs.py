"""The documentation stays true: every `dsaml ...` command it shows parses, the generated tables match what they are
generated from, the README stays short, and no tracked file names a machine's folders."""

from __future__ import annotations

import importlib
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from dsaml.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), ROOT / "benchmarks" / "README.md"]
MACHINE_PATH = re.compile(r"(?<![\w.~])/(?:work|root|home|tmp|Users|mnt|opt)/[\w.-]+")


def code_blocks(text: str) -> list[str]:
    """The shell code blocks of a markdown document (fences of ```bash, ```sh or a bare ```)."""
    blocks, current, language = [], None, ""
    for line in text.splitlines():
        if line.startswith("```"):
            if current is None:
                current, language = [], line[3:].strip()
            else:
                if language in ("", "bash", "sh"):
                    blocks.append("\n".join(current))
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def command_lines(text: str) -> list[str]:
    """The `dsaml ...` command lines of a document's code blocks (continued lines joined, comments cut)."""
    lines = []
    for block in code_blocks(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = " ".join(line.split(" #")[0].split())
            line = re.sub(r"^(\S+=\S+\s+)+", "", line)  # environment assignments
            if "dsaml.cli " in line:
                line = "dsaml " + line.split("dsaml.cli ", 1)[1]
            line = line.split("&&")[-1].strip().removeprefix(".venv/bin/")
            if line.startswith("dsaml "):
                lines.append(line)
    return lines


def test_every_dsaml_command_in_the_docs_parses():
    checked = 0
    for doc in DOCS:
        for line in command_lines(doc.read_text()):
            words = shlex.split(line)[1:]
            assert words and words[0] in COMMANDS, f"{doc.name}: unknown command in {line!r}"
            parser = importlib.import_module(COMMANDS[words[0]][0]).build_parser()
            try:
                parser.parse_args(words[1:])
            except SystemExit:
                pytest.fail(f"{doc.relative_to(ROOT)}: `{line}` does not parse")
            checked += 1
    assert checked >= 20  # the docs do show the commands


def test_the_command_line_extractor_finds_continued_and_launched_commands():
    text = ("```bash\nOMP_NUM_THREADS=1 dsaml train --config a \\\n    --max_steps 3   # note\n"
            "accelerate launch -m dsaml.cli predict x.mp3 --model m\nbash .ci/install && .venv/bin/dsaml demo\n```")
    assert command_lines(text) == ["dsaml train --config a --max_steps 3", "dsaml predict x.mp3 --model m",
                                   "dsaml demo"]


def test_the_readme_is_short_and_leads_with_what_a_newcomer_needs():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200 and max(len(line) for line in lines) <= 120
    headings = [line for line in lines[:100] if line.startswith("## ")]
    for needed in ("## Install", "## Train", "## Predict", "## Personalize"):
        assert any(h.startswith(needed) for h in headings), (needed, headings)


def test_the_configuration_reference_is_generated_from_the_fields():
    run = subprocess.run([sys.executable, str(ROOT / "docs" / "make_reference.py"), "--check"], capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr


def test_the_results_tables_are_generated_from_the_result_files(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text((ROOT / "README.md").read_text())
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "make_table.py"), "--output",
                          str(tmp_path / "results.md"), "--readme", str(readme)], capture_output=True, text=True,
                         cwd=ROOT / "benchmarks")
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "results.md").read_text() == (ROOT / "docs" / "experiments" / "results.md").read_text()
    assert readme.read_text() == (ROOT / "README.md").read_text()


def test_no_tracked_file_names_a_machines_folders():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    found = []
    for name in files:
        path = ROOT / name
        if name.startswith("tests/") or not path.is_file() or path.suffix in (".png", ".wav", ".safetensors"):
            continue
        text = path.read_text(errors="replace")
        found += [f"{name}: {m.group(0)}" for m in MACHINE_PATH.finditer(text)]
    assert found == []
