"""The `dsaml` command and the package import stay light: neither loads torch, transformers or torchaudio."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

HEAVY = ("torch", "transformers", "torchaudio")

SCRIPT = textwrap.dedent(
    """
    import contextlib, io, json, sys

    import dsaml
    from dsaml.cli import main

    with contextlib.redirect_stdout(io.StringIO()) as out:
        code = main(["--help"])
    print(json.dumps({"code": code, "help": out.getvalue(), "version": dsaml.__version__,
                      "loaded": sorted(m for m in sys.modules if m.split(".")[0] in {heavy})}))
    """
)


def test_import_and_help_load_no_heavy_library():
    result = subprocess.run([sys.executable, "-c", SCRIPT.replace("{heavy}", repr(set(HEAVY)))],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["code"] == 0 and "personalize" in report["help"] and report["version"]
    assert report["loaded"] == []


def test_console_script_help_and_lazy_model_classes():
    result = subprocess.run([sys.executable, "-m", "dsaml.cli", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "usage: dsaml <command>" in result.stdout
    # the model classes are still where the README says, loaded on first use
    import dsaml
    from dsaml.modeling import DSAMLConfig

    assert dsaml.DSAMLConfig is DSAMLConfig
    assert "DSAMLForDynamicEmotionRecognition" in dir(dsaml)

