"""Inference speed and memory on CPU through the streaming path `dsaml predict` takes: real-time factor (audio
seconds per second of compute, decoding and feature extraction included), the cost against its floor, folder
batching, peak RSS on a long file and the cold start.

Cases (audio: a synthetic stereo FLAC at 44.1 kHz; compute does not depend on the content; untrained models of
the `small` and `default` architectures, speed does not depend on the weights):

- `<size>/<45s|10min>/hop<h>`: `dsaml.inference.files.predict_file` (block decoding in a background thread, streamed
  features, sliding windows with the local CNN once per step) at batch 1, for the config's hop (half the
  window, the default chosen by `window_hop.py`), today's former default (window / 6) and the floor's.
- `<size>/network/hop<h>`: the network alone (`predict_long` on precomputed features, batch 1) on the 10 min
  song; `cost_ratio` = its time over the time at hop = window, where every step goes through the network
  exactly once (the floor for this architecture).
- `<size>/folder`: 8 files of 45 s: one `predict_file` at a time (batch 1, no overlap between files) against
  `predict_files` (background decoding, windows of all files batched, the batch size measured on its first
  windows), seconds per audio second.
- `cli/<45s|60min>`: `dsaml predict` of one file in a fresh interpreter with the default architecture:
  wall time (the 45 s run is the cold start: imports, model load, first prediction written) and peak RSS
  (`wait4`'s ru_maxrss of that process).

The 1-minute load average is recorded at the start and the end.

    python benchmarks/inference.py            # everything, ~5 min on 2 cores
    python benchmarks/inference.py --quick    # small model, 45 s and 2 min, CLI on 45 s and 3 min
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
from frontend import write_flac


def run_cli(args: list[str], threads: int) -> dict:
    """Wall seconds and peak RSS (MiB) of `dsaml <args>` in a fresh interpreter."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = [str(Path(sys.executable).with_name("dsaml")), *args]
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    err = process.stderr.read().decode(errors="replace")
    process.stdout.close()
    process.stderr.close()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}): {err[-2000:]}")
    return {"wall_s": wall, "peak_rss_mib": usage.ru_maxrss / 1024}


def stream_cases(size: str, files: dict[str, Path], seconds: dict[str, float], repeats: int) -> dict:
    from dsaml import DSAMLFeatureExtractor
    from dsaml.inference.files import predict_file

    model = common.build_model(size).eval()
    extractor = DSAMLFeatureExtractor.from_model_config(model.config)
    window, chosen = model.config.window_steps, model.config.hop_steps
    hops = sorted({chosen, window // 6, window}, reverse=True)
    out = {"model": size, "parameters": common.num_parameters(model), "window_steps": window,
           "chosen_hop_steps": chosen, "cases": {}}
    predict_file(model, extractor, files["45s"])  # warm-up (kernels, allocator, filter tables)
    for label, path in files.items():
        if label == "folder":
            continue
        for hop in hops:
            with common.PeakRSS() as mem:
                timing = common.timeit(lambda: predict_file(model, extractor, path, hop_steps=hop, batch_size=1),
                                       warmup=0, repeats=repeats if seconds[label] <= 60 else 1)
            case = {"audio_seconds": seconds[label], "hop_steps": hop, "window_batch": 1,
                    "seconds": timing["median_s"], "all_s": timing["all_s"],
                    "real_time_factor": seconds[label] / timing["median_s"], "peak_rss_mib": mem.peak_mib}
            out["cases"][f"{label}/hop{hop}"] = case
            print(f"  {size:7s} {label:6s} hop {hop:3d}: RTF {case['real_time_factor']:7.1f}x "
                  f"({timing['median_s']:.2f} s; peak RSS {mem.peak_mib:.0f} MiB)", flush=True)
    out["cases"].update(network_cases(model, extractor, files, seconds, hops, size))
    out["cases"]["folder"] = folder_case(model, extractor, files["folder"], seconds["folder"], repeats, size)
    return out


def network_cases(model, extractor, files: dict[str, Path], seconds: dict[str, float], hops, size: str) -> dict:
    """The network alone on the long song's features at each hop: the cost against the floor (hop = window)."""
    import torch

    from dsaml.audio.reader import load_audio

    window = model.config.window_steps
    long_label = max((k for k in seconds if k != "folder"), key=seconds.get)
    audio, rate = load_audio(files[long_label])
    with torch.inference_mode():
        inputs = extractor(audio, sampling_rate=rate)
    network = {}
    for hop in hops:
        timing = common.timeit(lambda: model.predict_long(inputs["input_features"], hop_steps=hop, batch_size=1),
                               warmup=0, repeats=1)
        network[hop] = timing["median_s"]
    cases = {}
    for hop in hops:
        cases[f"network/hop{hop}"] = {
            "audio_seconds": seconds[long_label], "hop_steps": hop, "seconds": network[hop],
            "seconds_per_audio_second": network[hop] / seconds[long_label],
            "cost_ratio": network[hop] / network[window]}
        print(f"  {size:7s} network hop {hop:3d}: {network[hop]:.2f} s, x{network[hop] / network[window]:.2f} the "
              f"floor", flush=True)
    return cases


def folder_case(model, extractor, folder_dir: Path, file_seconds: float, repeats: int, size: str) -> dict:
    """A folder: one file at a time against batched windows with decoding ahead."""
    from dsaml.inference.batch_size import BatchSizeTuner
    from dsaml.inference.files import predict_file, predict_files

    folder = sorted(folder_dir.glob("*.flac"))
    audio_s = file_seconds * len(folder)
    pairs, chosen_sizes = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        for path in folder:
            predict_file(model, extractor, path, batch_size=1, background=False)
        one = time.perf_counter() - start
        tuner = BatchSizeTuner()
        start = time.perf_counter()
        results = list(predict_files(model, extractor, folder, batch_size=tuner))
        batched = time.perf_counter() - start
        assert len(results) == len(folder)
        pairs.append((one, batched))
        chosen_sizes.append(tuner.chosen)
    one, batched = (statistics.median(x) for x in zip(*pairs))
    print(f"  {size:7s} folder {len(folder)} x {file_seconds:.0f} s: one at a time {audio_s / one:.1f}x, batched "
          f"{audio_s / batched:.1f}x (measured batch sizes {chosen_sizes})", flush=True)
    return {"files": len(folder), "audio_seconds": audio_s, "hop_steps": model.config.hop_steps,
            "one_at_a_time_s": one, "batched_s": batched, "all_pairs_s": pairs,
            "one_at_a_time_rtf": audio_s / one, "batched_rtf": audio_s / batched,
            "batched_over_one_at_a_time": batched / one, "measured_batch_sizes": chosen_sizes,
            "measured_per_window_s": tuner.per_window}


def cli_cases(model_dir: Path, files: dict[str, Path], threads: int, out_dir: Path, repeats: int) -> dict:
    out = {}
    for label, path in files.items():
        runs = [run_cli(["predict", str(path), "--model", str(model_dir), "--output", str(out_dir / f"{label}_{i}")],
                        threads) for i in range(repeats if label == "45s" else 1)]
        out[label] = {"wall_s": statistics.median(r["wall_s"] for r in runs),
                      "all_wall_s": [r["wall_s"] for r in runs], "peak_rss_mib": max(r["peak_rss_mib"] for r in runs)}
        print(f"  dsaml predict {label}: {out[label]['wall_s']:.2f} s wall, peak RSS "
              f"{out[label]['peak_rss_mib']:.0f} MiB", flush=True)
    long_label = next(k for k in files if k != "45s")
    out["long_over_short_peak_rss"] = out[long_label]["peak_rss_mib"] / out["45s"]["peak_rss_mib"]
    return out


def main() -> None:
    p = common.parser(__doc__.split("\n\n")[0], sizes=True)
    args = p.parse_args()
    common.setup(args.threads)
    load_start = os.getloadavg()[0]
    if args.quick:
        sizes, minutes, cli_minutes, repeats = ["small"], {"45s": 0.75, "2min": 2.0}, {"45s": 0.75, "3min": 3.0}, 1
    else:
        sizes, minutes, cli_minutes, repeats = ["small", "default"], {"45s": 0.75, "10min": 10.0}, \
            {"45s": 0.75, "60min": 60.0}, 3
    figures = {"load_average_1m_at_start": load_start}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = {}
        for label, m in {**minutes, **cli_minutes}.items():
            files[label] = folder / f"{label}.flac"
            if not files[label].exists():
                write_flac(files[label], m)
        (folder / "folder").mkdir()
        for i in range(8 if not args.quick else 4):
            write_flac(folder / "folder" / f"clip{i}.flac", 0.75)
        seconds = {label: m * 60 for label, m in minutes.items()} | {"folder": 45.0}
        stream_files = {label: files[label] for label in minutes} | {"folder": folder / "folder"}
        for size in args.sizes or sizes:
            figures[size] = stream_cases(size, stream_files, seconds, repeats)
        model = common.build_model("small" if args.quick else "default").eval()
        model.save_pretrained(folder / "model")
        from dsaml import DSAMLFeatureExtractor

        DSAMLFeatureExtractor.from_model_config(model.config).save_pretrained(folder / "model")
        del model
        figures["cli"] = {"model": "small" if args.quick else "default",
                          **cli_cases(folder / "model", {k: files[k] for k in cli_minutes}, args.threads,
                                      folder / "out", repeats)}
    figures["load_average_1m_at_end"] = os.getloadavg()[0]
    common.write_result("inference", figures, args=args, path=args.output)


if __name__ == "__main__":
    main()
