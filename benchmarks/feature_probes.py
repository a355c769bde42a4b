"""What a model hears: linear probes of the synthetic generator's controls (tempo, loudness, brightness, mode).

For the TRAIN partition's songs of `synthetic:small` (songs the model was trained on; no listener labels are
used), each step's controls come from the generator (`datasets_scripts.synthetic.frame_features`) and are
predicted by a ridge regression from (a) the model's read-out features (what the adapted output layer reads),
(b) each step's mean log-mel, (c) the harmonic view; fitted on the even-numbered songs, scored (Pearson r) on
the odd ones. A control the read-out does not carry cannot be re-weighted by an inner loop that adapts the
output layer: this is how the README's "valence is deaf" diagnosis is measured.

    python benchmarks/feature_probes.py --model outputs/synthetic_small/best [--songs 60]
"""

from __future__ import annotations

import common
import numpy as np
import torch

CONTROLS = ("tempo", "loudness", "brightness", "mode")


def probe(x: np.ndarray, y: np.ndarray, train: np.ndarray, ridge: float = 0.01) -> list[float]:
    """Pearson r on the held-out songs of a ridge fit (standardized inputs) for each column of `y`."""
    x = (x - x[train].mean(0)) / (x[train].std(0) + 1e-6)
    x = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    a = x[train]
    coef = np.linalg.solve(a.T @ a + ridge * len(a) * np.eye(a.shape[1]), a.T @ y[train])
    pred = x[~train] @ coef
    return [float(np.corrcoef(pred[:, j], y[~train, j])[0, 1]) for j in range(y.shape[1])]


def main() -> None:
    from dsaml.adaptation.ridge import readout_inputs
    from dsaml.data.datasets import dataset_metadata, dataset_root, load_pdmer
    from dsaml.data.song_store import resolve_audio
    from dsaml.datasets_scripts.synthetic.synthetic import SyntheticSpec, frame_features, song_plans
    from dsaml.inference.loading import load_extractor, load_model
    from dsaml.modeling import DSAMLFeatureExtractor

    parser = common.parser(__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--songs", type=int, default=60, help="training songs probed (default 60)")
    args = parser.parse_args()
    common.setup(args.threads)
    model = load_model(args.model)
    extractor = load_extractor(args.model, model.config)
    harmonic_view = DSAMLFeatureExtractor.from_model_config(model.config)
    root = dataset_root("synthetic:small")
    options = dataset_metadata(root)["options"]
    spec = SyntheticSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in options["spec"].items()})
    plans = {p.song_id: p for p in song_plans(spec, int(options["seed"]))}
    rows = load_pdmer(root, "pdmer_flat", split="train")
    audio = {}
    for song_id, path in zip(rows["song_id"], rows["audio"]):
        audio.setdefault(song_id, path)
    views: dict[str, list[np.ndarray]] = {"read-out": [], "mean log-mel": [], "harmonic view": []}
    targets, song_index = [], []
    import soundfile as sf

    for i, song_id in enumerate(sorted(audio)[: args.songs]):
        wave, rate = sf.read(resolve_audio(root, audio[song_id]), dtype="float32")
        resampled = extractor.prepare_waveform(wave, rate, name=song_id)
        patches = extractor.log_mel_patches(resampled)
        harmonic = harmonic_view.harmonic_patches(resampled)
        controls = frame_features(plans[song_id])
        n = min(patches.shape[0], len(controls["mode"]))
        with torch.no_grad():
            hv = harmonic[None, :n] if model.config.harmonic_features else None
            read = readout_inputs(model, {"input_features": patches[None, :n], "harmonic_features": hv})[0]
        views["read-out"].append(read.numpy())
        views["mean log-mel"].append(patches[:n].mean(dim=1).numpy())
        views["harmonic view"].append(harmonic[:n].numpy())
        targets.append(np.stack([controls[c][:n] for c in CONTROLS], axis=1))
        song_index.append(np.full(n, i))
    y, song = np.concatenate(targets), np.concatenate(song_index)
    train = song % 2 == 0
    report = {"model": args.model, "songs": int(song.max() + 1), "steps": int(len(y)), "probes": {}}
    print(f"linear probes of the generator's controls, {report['songs']} synthetic:small training songs "
          f"(fit on even, Pearson r on odd songs):")
    for name, parts in views.items():
        x = np.concatenate(parts)
        r = dict(zip(CONTROLS, probe(x, y, train)))
        report["probes"][name] = {"dims": int(x.shape[1]), **r}
        print(f"  {name:<14} ({x.shape[1]:>3} dims): " + ", ".join(f"{c} {v:+.2f}" for c, v in r.items()))
    h = np.concatenate(views["harmonic view"])
    if h.shape[1] >= 38:
        quality = h[:, 36] - h[:, 37]
        report["mode_from_best_major_minus_best_minor"] = float(np.corrcoef(quality, y[:, 3])[0, 1])
        print(f"  best major minus best minor triad similarity vs mode: r = "
              f"{report['mode_from_best_major_minus_best_minor']:+.2f}")
    common.write_result("feature_probes", report, args=args, path=args.output)


if __name__ == "__main__":
    main()
