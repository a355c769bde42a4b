"""Shared helpers of the benchmark scripts: timing, peak memory, models, JSON results.

- `timeit(fn, warmup, repeats)`: wall-clock seconds per call (median, min, all), after warm-up calls.
- `PeakRSS`: the process's peak resident set size during a block, in MiB. On Linux the kernel's high-water
  mark (VmHWM) is reset by writing "5" to /proc/self/clear_refs, so each measurement is its own peak; elsewhere
  it falls back to `resource.getrusage` (the process-lifetime peak, reported as such).
- `setup(threads=2)`: torch threads (2 by default: the CPU budget these numbers are quoted for), no grad
  anomaly checks, deterministic seeds.
- `write_result(name, figures)`: `benchmarks/results/<name>.json`, written atomically, with machine info,
  the command line and versions, so `make_table.py` and a reviewer know what produced it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
REPO = HERE.parent
for extra in (REPO / "tests", HERE):  # tests/sizes.py (the small model); sibling benchmark modules
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from sizes import SMALL  # noqa: E402  the test suite's small model: hidden 64, 4 heads, 2 layers


def setup(threads: int = 2, seed: int = 0) -> None:
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set (interop threads can be set once per process)
        pass
    torch.manual_seed(seed)


def parser(description: str, sizes: bool = False) -> argparse.ArgumentParser:
    """The options every benchmark takes (and `--sizes`, the model sizes to run, when `sizes`)."""
    p = argparse.ArgumentParser(description=description)
    if sizes:
        p.add_argument("--sizes", nargs="+", default=None, choices=("small", "default"))
    p.add_argument("--quick", action="store_true", help="small sizes: runs in under a minute")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--output", type=Path, default=None, help="JSON path (default benchmarks/results/<name>.json)")
    return p


def model_config(size: str, **overrides):
    """`small` (tests/sizes.py SMALL) or `default` (DSAMLConfig())."""
    from dsaml import DSAMLConfig

    if size == "small":
        return DSAMLConfig(**{**SMALL, **overrides})
    if size == "default":
        return DSAMLConfig(**overrides)
    raise ValueError(f"unknown model size {size!r}")


def build_model(size: str, seed: int = 0, **overrides):
    import torch

    from dsaml import DSAMLForDynamicEmotionRecognition

    torch.manual_seed(seed)
    return DSAMLForDynamicEmotionRecognition(model_config(size, **overrides))


def num_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def timeit(fn: Callable[[], object], *, warmup: int = 1, repeats: int = 3) -> dict:
    """Seconds per call of `fn` after `warmup` untimed calls: median, min, mean and every repeat."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "mean_s": statistics.fmean(times),
            "repeats": repeats, "warmup": warmup, "all_s": times}


def _read_status(key: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024  # kB -> MiB
    except OSError:
        return None
    return None


class PeakRSS:
    """`with PeakRSS() as m: ...` then `m.peak_mib` (peak RSS during the block) and `m.delta_mib`
    (peak minus RSS at entry). `m.method` says how it was measured."""

    def __enter__(self) -> PeakRSS:
        self.method = "VmHWM reset via /proc/self/clear_refs"
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            self.method = "ru_maxrss (process-lifetime peak)"
        self.start_mib = _read_status("VmRSS") or 0.0
        return self

    def __exit__(self, *exc) -> None:
        peak = _read_status("VmHWM") if self.method.startswith("VmHWM") else None
        if peak is None:
            import resource

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports kB
        self.peak_mib = float(peak)
        self.delta_mib = float(peak - self.start_mib)


def machine_info(threads: int | None = None) -> dict:
    import torch

    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads() if threads is None else threads,
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
        info["load_average_1m_at_end"] = os.getloadavg()[0]
    except OSError:
        pass
    try:
        import dsaml

        info["dsaml"] = dsaml.__version__
    except Exception:  # pragma: no cover
        pass
    return info


def portable(value):
    """`value` with every absolute path replaced by its path relative to the working directory (or, outside it,
    its last two components): a result file names no folder of the machine that wrote it."""
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(v) for v in value]
    if isinstance(value, str) and value.startswith("/") and len(Path(value).parts) > 2:
        path = Path(value)
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return str(Path(*path.parts[-2:]))
    return value


def commit() -> str:
    """The checkout's commit, with `+` when it has uncommitted changes ('unknown' outside git)."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=HERE,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+" if dirty else "")


def write_result(name: str, figures: dict, *, args: argparse.Namespace | None = None, path: Path | None = None) -> Path:
    """Write `{"benchmark", "figures", "machine", "command", "commit", "quick", "date"}` atomically, paths made
    portable; returns the path."""
    path = Path(path) if path is not None else RESULTS / f"{name}{'_quick' if args is not None and args.quick else ''}.json"
    body = portable({
        "benchmark": name,
        "quick": bool(getattr(args, "quick", False)),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([Path(sys.argv[0]).name, *(portable(a) for a in sys.argv[1:])]),
        "commit": commit(),
        "machine": machine_info(getattr(args, "threads", None)),
        "figures": figures,
    })
    from dsaml.utils.files import atomic_write_text

    atomic_write_text(path, json.dumps(body, indent=2, default=float) + "\n")
    print(f"wrote {path}")
    return path


def random_batch(batch: int, steps: int, config, seed: int = 0) -> dict:
    """A model batch of random log-mel patches and labels in [-1, 1] (speed does not depend on the values)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    features = torch.randn(batch, steps, config.frames_per_step, config.num_mel_bins, generator=g)
    labels = torch.rand(batch, steps, 2, generator=g) * 2 - 1
    mask = torch.ones(batch, steps, dtype=torch.long)
    return {"input_features": features, "attention_mask": mask, "labels": labels}


def waveform(seconds: float, rate: int = 44100, seed: int = 0):
    """A test signal: a 440 Hz tone with noise (never silent)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
