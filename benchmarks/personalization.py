"""Personalization latency on CPU: one listener from ONE annotated song with the default settings (the model
config's `adaptation_steps` / `adaptation_lr`, every trainable parameter adapted, training-mode inner loop),
i.e. the inner loop that `dsaml personalize` and the evaluation protocol run (`dsaml.personalization.personalize.personalized_copy`
on `support_batch`: every `window_steps` window of the song; the calibrated share they then apply is one blend of
the adapted weights, negligible beside it).

Reported per model size:
- `end_to_end_s`: 44.1 kHz waveform -> log-mel patches -> alignment with the curves -> adapted copy;
- `adapt_s`: the adapted copy from ready features (deep copy + inner loop + writing the fast weights);
- `per_inner_step_s`; peak RSS;
- `predictor_only_adapt_s`: `adapt_s` for the same model configured with `adapted_parameters: ["predictor"]`
  (as `synthetic_small.yaml` does with the predictor's dense layers): the inner loop then runs the encoder once
  and steps the predictor on its output.
The song is 30 s (one 60-step window, like the synthetic songs); content does not change the compute.

    python benchmarks/personalization.py          # small and default model
    python benchmarks/personalization.py --quick  # small model only
"""

from __future__ import annotations

import copy

import common
import numpy as np


def bench(size: str, seconds: float, repeats: int) -> dict:
    import torch

    from dsaml import DSAMLFeatureExtractor
    from dsaml.adaptation.config import personalization_config
    from dsaml.data.alignment import align, song_patches
    from dsaml.data.batches import support_batch
    from dsaml.personalization.personalize import personalized_copy

    model = common.build_model(size).eval()
    config = model.config
    extractor = DSAMLFeatureExtractor.from_model_config(config)
    wave = common.waveform(seconds)
    frames = int(seconds * 2)
    rng = np.random.default_rng(0)
    arousal, valence = (np.clip(np.cumsum(rng.normal(0, 0.05, frames)), -1, 1) for _ in range(2))

    def features():
        patches = song_patches(extractor, wave, config.sampling_rate, "benchmark song")
        song = align(patches, arousal=arousal, valence=valence, start_seconds=0.0, frame_rate=2.0,
                     step_seconds=config.step_seconds, song_id="song", annotator="listener")
        return support_batch([song], config.window_steps)

    support = features()

    # the same model meta-trained to adapt its predictor only (as synthetic_small.yaml): one encoder pass
    predictor_model = copy.deepcopy(model)
    recipe = personalization_config(model)
    predictor_model.personalization_config = recipe.replace(adapted_parameters=["predictor"])

    def personalize(batch, m=model):
        with torch.enable_grad():
            return personalized_copy(m, batch, personalization_config(m), seed=0)

    personalize(support)  # warm-up
    personalize(support, predictor_model)
    head_t = common.timeit(lambda: personalize(support, predictor_model), warmup=0, repeats=max(repeats, 3))
    with common.PeakRSS() as mem:
        adapt_t = common.timeit(lambda: personalize(support), warmup=0, repeats=repeats)
    e2e_t = common.timeit(lambda: personalize(features()), warmup=0, repeats=repeats)
    steps = recipe.steps
    out = {
        "model": size, "parameters": common.num_parameters(model), "song_seconds": seconds,
        "support_windows": int(support["input_features"].shape[0]), "window_steps": config.window_steps,
        "adaptation_steps": steps, "adaptation_lr": recipe.learning_rate,
        "adapt_s": adapt_t["median_s"], "adapt_all_s": adapt_t["all_s"],
        "end_to_end_s": e2e_t["median_s"], "end_to_end_all_s": e2e_t["all_s"],
        "per_inner_step_s": adapt_t["median_s"] / max(steps, 1),
        "peak_rss_mib": mem.peak_mib, "memory_method": mem.method,
        "under_1s": e2e_t["median_s"] < 1.0,
        "predictor_only_adapt_s": head_t["median_s"],
    }
    print(f"  {size:7s} {steps} steps: adapt {out['adapt_s']:.2f} s, end to end {out['end_to_end_s']:.2f} s "
          f"({out['per_inner_step_s'] * 1000:.0f} ms per inner step), peak RSS {mem.peak_mib:.0f} MiB; "
          f"adapting the predictor only {head_t['median_s']:.3f} s", flush=True)
    return out


def main() -> None:
    p = common.parser(__doc__.split("\n\n")[0], sizes=True)
    args = p.parse_args()
    common.setup(args.threads)
    plan = {"small": 2, "default": 1} if not args.quick else {"small": 1}
    figures = {size: bench(size, 30.0, plan.get(size, 1)) for size in (args.sizes or plan)}
    common.write_result("personalization", figures, args=args, path=args.output)


if __name__ == "__main__":
    main()
