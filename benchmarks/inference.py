"""Inference real-time factor on CPU: seconds of audio per second of compute, feature extraction included
(44.1 kHz waveform -> `DSAMLFeatureExtractor` -> `model.predict_long` sliding windows), for a 45 s clip and a
10 min song, small and default model, and peak memory.

Modes:
- `batch1`: one song per call, sliding windows run one at a time (`predict_long(batch_size=1)`);
- `batched`: sliding windows in mini-batches of 32 (`predict_long`'s default), and for the 45 s clip 8 clips
  per call (the extractor pads them into one batch).

The audio is a synthetic tone with noise (compute does not depend on the content). Model in eval mode under
`torch.inference_mode()`. Sliding windows: `window_steps` (60) every `inference_hop_steps` (10), so every step
is computed ~6 times: a 10 min song is 115 windows. The 10 min song is timed once (no repeat).

    python benchmarks/inference.py           # 45 s and 10 min, small and default model
    python benchmarks/inference.py --quick   # small model, 45 s and 2 min, < 1 min
"""

from __future__ import annotations

import numpy as np

import common


def waveform(seconds: float, rate: int = 44100, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def run(model, extractor, clips: list[np.ndarray], rate: int, window_batch: int):
    import torch

    with torch.inference_mode():
        inputs = extractor(clips if len(clips) > 1 else clips[0], sampling_rate=rate)
        return model.predict_long(inputs["input_features"], attention_mask=inputs["attention_mask"],
                                  global_input_values=inputs.get("global_input_values"), batch_size=window_batch)


def bench(size: str, durations: dict[str, float], repeats: int, clips_batched: int, long_modes=("batch1", "batched")) -> dict:
    import torch

    from dsaml import DSAMLFeatureExtractor

    model = common.build_model(size).eval()
    extractor = DSAMLFeatureExtractor.from_model_config(model.config)
    rate = model.config.sampling_rate
    out = {"model": size, "parameters": common.num_parameters(model), "window_steps": model.config.window_steps,
           "hop_steps": model.config.inference_hop_steps, "cases": {}}
    run(model, extractor, [waveform(35.0)], rate, 32)  # warm-up (kernels, allocator)
    for label, seconds in durations.items():
        wave = waveform(seconds)
        modes = {"batch1": ([wave], 1), "batched": ([wave], 32)}
        if seconds <= 60:
            modes["batched"] = ([waveform(seconds, seed=i) for i in range(clips_batched)], 32)
        else:
            modes = {m: modes[m] for m in long_modes}
        for mode, (clips, window_batch) in modes.items():
            with common.PeakRSS() as mem:
                timing = common.timeit(lambda: run(model, extractor, clips, rate, window_batch),
                                       warmup=0, repeats=repeats if seconds <= 60 else 1)
            with torch.inference_mode():  # feature extraction alone, for its share
                fx = common.timeit(lambda: extractor(clips if len(clips) > 1 else clips[0], sampling_rate=rate),
                                   warmup=0, repeats=1)
            audio_s = seconds * len(clips)
            case = {
                "audio_seconds": audio_s, "songs_per_call": len(clips), "window_batch": window_batch,
                "seconds": timing["median_s"], "all_s": timing["all_s"],
                "real_time_factor": audio_s / timing["median_s"],
                "feature_extraction_seconds": fx["median_s"],
                "peak_rss_mib": mem.peak_mib, "memory_method": mem.method,
            }
            out["cases"][f"{label}/{mode}"] = case
            print(f"  {size:7s} {label:6s} {mode:7s} RTF {case['real_time_factor']:7.1f}x  "
                  f"({timing['median_s']:.2f} s for {audio_s:.0f} s of audio; features {fx['median_s']:.2f} s; "
                  f"peak RSS {mem.peak_mib:.0f} MiB)", flush=True)
    return out


def main() -> None:
    p = common.parser(__doc__.split("\n\n")[0], sizes=True)
    p.add_argument("--long-sizes", nargs="+", default=None, choices=("small", "default"),
                   help="models timed on the 10 min song (default: both; each call runs 115 windows)")
    p.add_argument("--long-modes", nargs="+", default=["batch1", "batched"], choices=("batch1", "batched"))
    args = p.parse_args()
    common.setup(args.threads)
    if args.quick:
        sizes, durations, repeats, clips = ["small"], {"45s": 45.0, "2min": 120.0}, 1, 4
    else:
        sizes, durations, repeats, clips = ["small", "default"], {"45s": 45.0, "10min": 600.0}, 2, 8
    long_sizes = args.long_sizes or sizes
    figures = {}
    for size in args.sizes or sizes:
        wanted = {k: v for k, v in durations.items() if v <= 60 or size in long_sizes}
        figures[size] = bench(size, wanted, repeats, clips, tuple(args.long_modes))
    common.write_result("inference", figures, args=args, path=args.output)


if __name__ == "__main__":
    main()
