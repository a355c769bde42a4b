"""Figures are written without touching matplotlib's global state (a notebook's backend stays its own)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import matplotlib
    import pandas as pd

    from dsaml.utils.plots import plot_before_after, plot_curves, plot_training

    backend = matplotlib.get_backend()
    frame = pd.DataFrame({"time_seconds": [0.0, 0.5, 1.0], "arousal": [0.1, 0.2, 0.1], "valence": [0.0, -0.1, 0.3]})
    plot_curves(frame, sys.argv[1] + "/curves.png", title="song")
    records = [{"annotator": "a", "before/ccc": 0.1, "after/ccc": 0.3}, {"annotator": "b", "before/ccc": 0.2,
                                                                         "after/ccc": 0.1}]
    plot_before_after(records, sys.argv[1] + "/scores.png")
    plot_training([{"step": 1, "train/query_loss": 0.5, "validation/before/ccc": 0.1, "validation/after/ccc": 0.2,
                    "validation/before/rmse": 0.4, "validation/after/rmse": 0.3}], sys.argv[1] + "/training.png")
    print(json.dumps({"before": backend, "after": matplotlib.get_backend(),
                      "pyplot": "matplotlib.pyplot" in sys.modules}))
    """
)


def test_figures_leave_the_backend_and_pyplot_alone(tmp_path):
    env = {**os.environ, "MPLBACKEND": "svg"}  # the caller's choice, which dsaml must keep
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True,
                            timeout=120, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    state = json.loads(result.stdout)
    assert state == {"before": "svg", "after": "svg", "pyplot": False}
    for name in ("curves", "scores", "training"):
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
