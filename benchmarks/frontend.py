"""Audio front end: feature speed against the torchaudio front end, resampling memory, streaming memory.

- `features_<rate>`: seconds for the log-mel patches of a 10-minute song at that input rate, the torch front end
  (`DSAMLFeatureExtractor`) against the torchaudio one it replaced (resample + MelSpectrogram + log), measured
  alternately in the same process so machine load hits both alike.
- `resample_44101`: peak RSS (above the input) of resampling a 10-minute 44101 Hz song to 44.1 kHz (torchaudio
  would allocate a 7.8 GB kernel).
- `stream_<minutes>`: peak RSS of a fresh interpreter decoding a stereo FLAC file block by block
  (`AudioReader.blocks`) into `extractor.stream`, for a 45 s and a long file: flat memory means the two agree.

Usage: `python benchmarks/frontend.py [--long_minutes 60]`; writes `benchmarks/results/frontend.json`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from common import PeakRSS, parser, setup, timeit, write_result
from torchaudio_reference import torchaudio_features  # noqa: E402  tests/ is on the path (common)


def song(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def write_flac(path: Path, minutes: float, rate: int = 44100) -> None:
    import soundfile as sf

    with sf.SoundFile(path, "w", samplerate=rate, channels=2, format="FLAC") as f:
        for minute in range(int(np.ceil(minutes))):
            block = song(min(60.0, (minutes - minute) * 60), rate, seed=minute)
            f.write(np.stack([block, 0.5 * block], axis=1))


STREAM_SCRIPT = """
import resource, sys
from dsaml import DSAMLFeatureExtractor
from dsaml.audio import AudioReader
extractor, steps = DSAMLFeatureExtractor(), 0
with AudioReader(sys.argv[1]) as reader:
    stream = extractor.stream(reader.sample_rate, name=sys.argv[1])
    for block in reader.blocks():
        steps += stream.push(block).shape[0]
    steps += stream.flush().shape[0]
print(steps, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def stream_file(path: Path, threads: int) -> tuple[int, float]:
    """Steps and peak RSS (MiB) of streaming `path` in a fresh interpreter: the process-lifetime peak is then
    the streaming's own, whatever ran before in this process."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, "-c", STREAM_SCRIPT, str(path)], capture_output=True, text=True,
                         check=True, env=env)
    steps, peak = out.stdout.split()
    return int(steps), float(peak)


def main() -> None:
    cli = parser("audio front end benchmark")
    cli.add_argument("--long_minutes", type=float, default=60.0)
    cli.add_argument("--rates", type=int, nargs="+", default=[44100, 48000, 16000])
    args = cli.parse_args()
    setup(args.threads)
    import torch

    from dsaml import DSAMLFeatureExtractor
    from dsaml.modeling.resampling_dsaml import Resampler

    extractor = DSAMLFeatureExtractor()
    figures = {}
    for rate in args.rates:
        audio = song(600.0, rate)
        ours = timeit(lambda: extractor(audio, sampling_rate=rate), warmup=1, repeats=3)
        theirs = timeit(lambda: torchaudio_features(audio, rate), warmup=1, repeats=3)
        figures[f"features_{rate}"] = {"torch_front_end_median_s": ours["median_s"], "torch_front_end_min_s": ours["min_s"],
                                      "torchaudio_median_s": theirs["median_s"], "torchaudio_min_s": theirs["min_s"]}
        print(rate, figures[f"features_{rate}"], flush=True)
    odd = torch.from_numpy(song(600.0, 44101))
    with PeakRSS() as memory:
        out = Resampler(44101, 44100)(odd)
    figures["resample_44101"] = {"output_samples": out.numel(), "peak_above_start_mib": memory.delta_mib,
                                 "output_mib": out.numel() * 4 / 2**20}
    print(figures["resample_44101"], flush=True)
    del odd, out
    with tempfile.TemporaryDirectory() as folder:
        for minutes in (0.75, args.long_minutes):
            path = Path(folder) / f"song_{minutes}.flac"
            write_flac(path, minutes)
            steps, peak = stream_file(path, args.threads)
            figures[f"stream_{minutes:g}min"] = {"steps": steps, "peak_rss_mib": peak}
            print(minutes, figures[f"stream_{minutes:g}min"], flush=True)
    write_result("frontend", figures, args=args, path=args.output)


if __name__ == "__main__":
    main()
