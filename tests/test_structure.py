"""The package's shape, held by tests: imports run one way (docs/architecture.md), files and functions stay small,
and the remote code stays self-contained."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from structure import import_problems, package_modules, size_problems

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = {"dsaml": ROOT / "src" / "dsaml", "dsaml.modeling": ROOT / "modeling",
           "dsaml.datasets_scripts": ROOT / "datasets_scripts"}


def test_imports_run_one_way_without_circles():
    problems = import_problems(package_modules(PACKAGE))
    assert problems == [], "\n".join(problems)


def test_the_checker_names_a_circle_an_upward_import_and_an_import_hidden_in_a_function(tmp_path):
    package = tmp_path / "dsaml"
    files = {
        "__init__.py": "",
        "errors.py": "",
        "utils/__init__.py": "",
        "utils/files.py": "from dsaml.training.loop import train\n",  # upward: utils is below training
        "training/__init__.py": "",
        "training/loop.py": "def train():\n    pass\n",
        "data/__init__.py": "",
        "data/a.py": "from dsaml.data import b\n",
        "data/b.py": "def f():\n    from dsaml.data.a import g\n    return g\n",  # a circle, closed in a function
        "audio/__init__.py": "",
        "audio/reader.py": "import dsaml.errors\n",  # allowed: a lower room
    }
    for name, text in files.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(textwrap.dedent(text))
    problems = import_problems(package_modules({"dsaml": package}))
    assert f"{package / 'utils' / 'files.py'}:1: dsaml.utils.files imports dsaml.training.loop, a room above its own " \
           "(dsaml.training over dsaml.utils)" in problems
    assert any(p.startswith(f"{package / 'data' / 'b.py'}:2: dsaml.data.b imports dsaml.data.a inside f()")
               for p in problems), problems
    assert "import circle: dsaml.data.a -> dsaml.data.b -> dsaml.data.a" in problems
    assert len(problems) == 3, problems


def test_files_and_functions_stay_small():
    folders = {**PACKAGE, "tests": ROOT / "tests", "benchmarks": ROOT / "benchmarks"}
    problems = size_problems(package_modules(folders, exclude=[ROOT / "tests" / "data"]))
    assert problems == [], "\n".join(problems)


def test_the_checker_names_a_long_file_and_a_long_function(tmp_path):
    (tmp_path / "big.py").write_text("def long():\n" + "    x = 1\n" * 70 + "\n" * 340)
    problems = size_problems(package_modules({"pkg": tmp_path}))
    assert problems == [f"{tmp_path / 'big.py'}: 411 lines (at most 400); split it by job",
                        f"{tmp_path / 'big.py'}:1: long() has 71 lines (at most 60); give its steps names"]


def test_the_remote_code_imports_nothing_of_the_rest_of_the_package():
    code = ("import sys, dsaml.modeling\n"
            "print(sorted(m for m in sys.modules if m.startswith('dsaml.') and not m.startswith('dsaml.modeling')))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"


def test_every_exception_class_lives_in_errors_py():
    import ast

    defined = []
    for module in package_modules(PACKAGE).values():
        if module.name in ("dsaml.errors",) or module.name.startswith("dsaml.modeling"):
            continue
        for node in ast.walk(ast.parse(module.path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                    getattr(base, "id", getattr(base, "attr", "")).endswith(("Error", "Exception")) for base in node.bases):
                defined.append(f"{module.path}:{node.lineno}: {node.name}")
    assert defined == []
