"""Personalization latency on CPU: one listener from ONE annotated song with the default settings (the model
config's `adaptation_steps` / `adaptation_lr`, every trainable parameter adapted, training-mode inner loop),
i.e. exactly what `dsaml personalize` and the evaluation protocol do (`dsaml.episodes.personalized_copy` on
`support_batch`: every `window_steps` window of the song).

Reported per model size:
- `end_to_end_s`: 44.1 kHz waveform -> log-mel patches -> alignment with the curves -> adapted copy;
- `adapt_s`: the adapted copy from ready features (deep copy + inner loop + writing the fast weights);
- `per_inner_step_s`; peak RSS;
- `experimental_head_only_cached_encoder_s`: NOT the default method: the same number of steps adapting only
  the `predictor.*` parameters, on the encoder output computed once (what `adapted_parameters=["predictor"]`
  could cost if the inner loop reused the frozen encoder's output instead of re-running the whole model).
The song is 30 s (one 60-step window, like the synthetic songs); content does not change the compute.

    python benchmarks/personalization.py          # small and default model
    python benchmarks/personalization.py --quick  # small model only
"""

from __future__ import annotations

import numpy as np

import common
from inference import waveform


def bench(size: str, seconds: float, repeats: int) -> dict:
    import torch

    from dsaml import DSAMLFeatureExtractor
    from dsaml.episodes import personalized_copy, support_batch
    from dsaml.examples import align, song_patches

    model = common.build_model(size).eval()
    config = model.config
    extractor = DSAMLFeatureExtractor.from_model_config(config)
    wave = waveform(seconds)
    frames = int(seconds * 2)
    rng = np.random.default_rng(0)
    arousal, valence = (np.clip(np.cumsum(rng.normal(0, 0.05, frames)), -1, 1) for _ in range(2))

    def features():
        patches = song_patches(extractor, wave, config.sampling_rate, "benchmark song")
        song = align(patches, arousal=arousal, valence=valence, start_seconds=0.0, frame_rate=2.0,
                     step_seconds=config.step_seconds, song_id="song", annotator="listener")
        return support_batch([song], config.window_steps)

    support = features()

    def personalize(batch):
        with torch.enable_grad():
            return personalized_copy(model, batch, seed=0)

    def head_only(batch):
        """EXPERIMENTAL, a different method: adapt only `predictor.*` on the encoder output computed once."""
        from torch.func import functional_call

        from dsaml.modeling.losses_dsaml import emotion_loss

        mask = batch["attention_mask"]
        model.train()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            with torch.no_grad():
                hidden = model.dsaml.encode(batch["input_features"], mask, batch.get("global_input_values"))[0]
            fast = {n: p for n, p in model.predictor.named_parameters()}
            for _ in range(config.adaptation_steps):
                with torch.enable_grad():
                    logits = functional_call(model.predictor, fast, (hidden, mask))
                    loss = emotion_loss(logits, batch["labels"], mask, config.loss_type)
                    grads = torch.autograd.grad(loss, list(fast.values()))
                fast = {n: (w - config.adaptation_lr * g).detach().requires_grad_() for (n, w), g in zip(fast.items(), grads)}
        model.eval()
        return fast

    personalize(support)  # warm-up
    head_only(support)
    head_t = common.timeit(lambda: head_only(support), warmup=0, repeats=max(repeats, 3))
    with common.PeakRSS() as mem:
        adapt_t = common.timeit(lambda: personalize(support), warmup=0, repeats=repeats)
    e2e_t = common.timeit(lambda: personalize(features()), warmup=0, repeats=repeats)
    steps = config.adaptation_steps
    out = {
        "model": size, "parameters": common.num_parameters(model), "song_seconds": seconds,
        "support_windows": int(support["input_features"].shape[0]), "window_steps": config.window_steps,
        "adaptation_steps": steps, "adaptation_lr": config.adaptation_lr,
        "adapt_s": adapt_t["median_s"], "adapt_all_s": adapt_t["all_s"],
        "end_to_end_s": e2e_t["median_s"], "end_to_end_all_s": e2e_t["all_s"],
        "per_inner_step_s": adapt_t["median_s"] / max(steps, 1),
        "peak_rss_mib": mem.peak_mib, "memory_method": mem.method,
        "under_1s": e2e_t["median_s"] < 1.0,
        "experimental_head_only_cached_encoder_s": head_t["median_s"],
    }
    print(f"  {size:7s} {steps} steps: adapt {out['adapt_s']:.2f} s, end to end {out['end_to_end_s']:.2f} s "
          f"({out['per_inner_step_s'] * 1000:.0f} ms per inner step), peak RSS {mem.peak_mib:.0f} MiB; "
          f"experimental head-only adaptation on a cached encoder output {head_t['median_s']:.3f} s", flush=True)
    return out


def main() -> None:
    p = common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--sizes", nargs="+", default=None, choices=("small", "default"))
    args = p.parse_args()
    common.setup(args.threads)
    plan = {"small": 2, "default": 1} if not args.quick else {"small": 1}
    figures = {size: bench(size, 30.0, plan.get(size, 1)) for size in (args.sizes or plan)}
    common.write_result("personalization", figures, args=args, path=args.output)


if __name__ == "__main__":
    main()
