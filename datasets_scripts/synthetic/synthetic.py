"""The synthetic PDMER dataset: the package's embedded default (the README trains on it with no download).

Songs are real audio rendered by `synthetic_music.py` from four smoothly varying controls. Emotion is a KNOWN
function of those controls, and every simulated listener perceives it in their own way, strongly enough that
one annotated song tells a model a lot about that listener. Everything is a deterministic function of `seed`.

Emotion (population ground truth), from the controls at the middle of each 0.5 s label frame:

    T = (tempo_bpm - 120) / 54        L = (loudness_db + 21) / 9        (both in [-1, 1])
    B = 2 * brightness - 1            M = 2 * major - 1
    arousal = g_c(0.45 T + 0.35 L + 0.20 B) * 0.9
    valence = g_c(0.60 M + 0.25 B + 0.15 T) * 0.9          g_c(s) = tanh(c s) / tanh(c), c = 1.5

A listener replaces the population's weights, curvature c, gain (0.9) and zero bias with their own, reacts
`lag_steps` frames late and adds smooth AR(1) noise:

    y[k] = clip(bias + gain * g_c(w . features[k - lag]) + noise[k], -1, 1)

Listener styles (weights): `typical` (population weights, perturbed), `inverted_valence` (minor sounds
pleasant: the mode weight flips sign), `tempo_arousal` (arousal from tempo alone), `bright_valence` (valence
from brightness alone), `compressed` (low gains: a timid annotator). Each row's `annotator_info` holds the
listener's parameters, so benchmarks can relate personalization gains to them.

Configs: `pdmer` / `pdmer_flat` (every listener's curves) and `dmer` (each song's average over the listeners
who rated it). Partitions (fixed by the spec and the seed, chosen before any modelling):

- `train`: the meta-training listeners, on the "known" songs;
- `test`: held-out listeners on the known songs (new listener, known song): a seeded `test_annotator_fraction`
  of the base listeners (the test split of generator version 1), plus `test_listeners_per_style` new listeners
  of every style, so that every style is tested;
- `validation`: `validation_listeners_per_style` new listeners of every style on the known songs (model
  selection and every tuning choice);
- `test_unseen`: `unseen_listeners_per_style` new listeners of every style who rate only `unseen_songs` new
  songs that no other listener rated (new listener, new song);
- `dmer`: the known songs averaged over the train listeners (a seeded `validation_song_fraction` of them in
  `validation`, the rest `train`), and the unseen songs averaged over their `test_unseen` listeners (`test`),
  so the averaged test songs were never heard in training. Without unseen songs (`tiny`), a seeded
  `test_song_fraction` of the known songs is the `dmer` test split instead.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from dsaml.datasets_scripts.common.card import CardInfo
from dsaml.datasets_scripts.common.configs import write_configs
from dsaml.datasets_scripts.common.report import DropReport
from dsaml.datasets_scripts.common.schema import AVERAGE_ANNOTATOR, FRAME_RATE, Record
from dsaml.datasets_scripts.common.splits import held_out
from dsaml.datasets_scripts.common.writer import DatasetFolderWriter
from dsaml.datasets_scripts.synthetic.music import SAMPLE_RATE, SongPlan, controls, plan_song, render

GENERATOR_VERSION = "2"  # bump when the output for a given (size, seed) changes: it keys the package cache

FEATURE_NAMES = {"arousal": ("tempo", "loudness", "brightness"), "valence": ("mode", "brightness", "tempo")}
POPULATION_WEIGHTS = {"arousal": (0.45, 0.35, 0.20), "valence": (0.60, 0.25, 0.15)}
POPULATION_CURVATURE = 1.5
POPULATION_GAIN = 0.9
STYLES = ("typical", "inverted_valence", "tempo_arousal", "bright_valence", "compressed")
STYLE_PROBABILITIES = (0.45, 0.15, 0.15, 0.15, 0.10)


@dataclass(frozen=True)
class SyntheticSpec:
    num_songs: int
    num_annotators: int
    songs_per_annotator: tuple[int, int]  # inclusive range, drawn per listener
    song_seconds: tuple[float, float]  # inclusive range, in 0.5 s steps
    test_annotator_fraction: float = 0.25
    test_song_fraction: float = 0.2  # dmer only, when there are no unseen songs
    validation_song_fraction: float = 0.1  # dmer only
    sample_rate: int = SAMPLE_RATE
    # stratified held-out listeners (module docstring): this many new listeners of EVERY style per partition
    test_listeners_per_style: int = 0
    validation_listeners_per_style: int = 0
    unseen_listeners_per_style: int = 0
    unseen_songs: int = 0
    unseen_songs_per_annotator: tuple[int, int] = (12, 16)


PRESETS = {
    # tests: a few seconds to build
    "tiny": SyntheticSpec(num_songs=8, num_annotators=6, songs_per_annotator=(8, 8), song_seconds=(30.0, 30.0)),
    # the README default: a few minutes of CPU meta-training; every listener rates >= 16 songs (1 + 15 tasks)
    "small": SyntheticSpec(num_songs=48, num_annotators=24, songs_per_annotator=(16, 24), song_seconds=(30.0, 36.0),
                           test_listeners_per_style=1, validation_listeners_per_style=2, unseen_listeners_per_style=2,
                           unseen_songs=16),
    # benchmarks: 500 listeners sharing 96 songs of audio
    "large": SyntheticSpec(num_songs=96, num_annotators=500, songs_per_annotator=(16, 24), song_seconds=(30.0, 36.0),
                           test_annotator_fraction=0.2),
}


# -- emotion ----------------------------------------------------------------------------------------------------
def normalized_features(ctrl: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The controls mapped to [-1, 1]: tempo, loudness, brightness, mode."""
    return {
        "tempo": np.clip((ctrl["tempo_bpm"] - 120.0) / 54.0, -1, 1),
        "loudness": np.clip((ctrl["loudness_db"] + 21.0) / 9.0, -1, 1),
        "brightness": 2 * ctrl["brightness"] - 1,
        "mode": 2 * ctrl["major"] - 1,
    }


def _curve(s: np.ndarray, curvature: float) -> np.ndarray:
    return np.tanh(curvature * s) / np.tanh(curvature)


def population_emotion(features: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The known emotion function (module docstring), before any listener's perception."""
    out = []
    for dim in ("arousal", "valence"):
        s = sum(w * features[name] for w, name in zip(POPULATION_WEIGHTS[dim], FEATURE_NAMES[dim]))
        out.append(POPULATION_GAIN * _curve(s, POPULATION_CURVATURE))
    return out[0], out[1]


def frame_features(plan: SongPlan) -> dict[str, np.ndarray]:
    """Normalized features at the middle of every 0.5 s label frame of the song."""
    frames = int(round(plan.seconds * FRAME_RATE))
    return normalized_features(controls(plan, (np.arange(frames) + 0.5) / FRAME_RATE))


@dataclass(frozen=True)
class Listener:
    annotator_id: str
    style: str
    weights: dict  # dim -> tuple of 3 weights over FEATURE_NAMES[dim]
    bias: dict  # dim -> float
    gain: dict
    curvature: dict
    lag_steps: int
    noise_std: float
    noise_correlation: float

    def info(self) -> dict:
        out = asdict(self)
        out.pop("annotator_id")
        out["weights"] = {d: dict(zip(FEATURE_NAMES[d], map(float, w))) for d, w in self.weights.items()}
        return out

    def _noise(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """Stationary AR(1) noise with standard deviation `noise_std` (slow wobble, like a hand on a slider)."""
        from scipy.signal import lfilter

        phi = self.noise_correlation
        e = rng.standard_normal(size) * self.noise_std * np.sqrt(1 - phi**2)
        e[0] = rng.standard_normal() * self.noise_std
        return lfilter([1.0], [1.0, -phi], e)

    def noise_free(self, features: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """What this listener hears, before the hand's noise and the slider's [-1, 1] clip."""
        out = []
        for dim in ("arousal", "valence"):
            s = sum(w * features[name] for w, name in zip(self.weights[dim], FEATURE_NAMES[dim]))
            y = self.bias[dim] + self.gain[dim] * _curve(s, self.curvature[dim])
            if self.lag_steps:
                y = np.concatenate([np.full(self.lag_steps, y[0]), y[: -self.lag_steps]])
            out.append(y)
        return out[0], out[1]

    def perceive(self, features: dict[str, np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The listener's annotation: noise-free perception + smooth noise, clipped to the slider's range."""
        return tuple(np.clip(y + self._noise(y.size, rng), -1.0, 1.0).astype(np.float32)
                     for y in self.noise_free(features))


def make_listener(annotator_id: str, style: str, rng: np.random.Generator) -> Listener:
    weights = {}
    for dim in ("arousal", "valence"):
        w = np.asarray(POPULATION_WEIGHTS[dim]) + rng.normal(0, 0.08, 3)
        weights[dim] = np.clip(w, 0.0, None)
    if style == "inverted_valence":
        weights["valence"][0] = -abs(weights["valence"][0]) - 0.2
    elif style == "tempo_arousal":
        weights["arousal"] = np.array([0.9, 0.05, 0.05])
    elif style == "bright_valence":
        weights["valence"] = np.array([0.05, 0.9, 0.05])
    for dim in weights:  # weights sum to 1 in absolute value: s stays in [-1, 1]
        weights[dim] = tuple(float(x) for x in weights[dim] / max(np.abs(weights[dim]).sum(), 1e-6))
    low_gain = style == "compressed"
    return Listener(
        annotator_id=annotator_id,
        style=style,
        weights=weights,
        bias={d: float(np.clip(rng.normal(0, 0.2), -0.4, 0.4)) for d in ("arousal", "valence")},
        gain={d: float(rng.uniform(0.25, 0.45) if low_gain else rng.uniform(0.6, 1.2)) for d in ("arousal", "valence")},
        curvature={d: float(rng.uniform(0.5, 3.0)) for d in ("arousal", "valence")},
        lag_steps=int(rng.integers(0, 5)),
        noise_std=float(rng.uniform(0.02, 0.08)),
        noise_correlation=0.8,
    )


# -- generation -------------------------------------------------------------------------------------------------
def _rng(seed: int, *path: int) -> np.random.Generator:
    """Independent streams per (seed, component, index): adding listeners never changes the songs."""
    return np.random.default_rng([seed, *path])


def spec_for(size: str, **overrides) -> SyntheticSpec:
    if size not in PRESETS:
        raise ValueError(f"unknown synthetic size {size!r}; choose from {sorted(PRESETS)}")
    return replace(PRESETS[size], **overrides) if overrides else PRESETS[size]


def song_plans(spec: SyntheticSpec, seed: int) -> list[SongPlan]:
    """The known songs (`num_songs`), then the unseen ones; a song's plan depends only on its index."""
    total = spec.num_songs + spec.unseen_songs
    width = max(3, len(str(total - 1)))
    plans = []
    for i in range(total):
        rng = _rng(seed, 1, i)
        low, high = spec.song_seconds
        seconds = low + 0.5 * int(rng.integers(0, int(round((high - low) * 2)) + 1))
        plans.append(plan_song(f"S{i:0{width}d}", seconds, rng))
    return plans


STRATIFIED_PARTITIONS = ("test", "validation", "test_unseen")


def _stratified(spec: SyntheticSpec) -> list[str]:
    """The partition of every stratified listener, in id order: `per_style` of each style per partition."""
    counts = (spec.test_listeners_per_style, spec.validation_listeners_per_style, spec.unseen_listeners_per_style)
    return [p for p, n in zip(STRATIFIED_PARTITIONS, counts) for _ in range(n * len(STYLES))]


def listeners(spec: SyntheticSpec, seed: int) -> list[tuple[Listener, str | None]]:
    """Every listener with its stratified partition (None: a base listener, train or test by `held_out`).

    The base listeners are generator version 1's, unchanged; the stratified ones follow with their own streams."""
    extra = _stratified(spec)
    total = spec.num_annotators + len(extra)
    width = max(3, len(str(total - 1)))
    # Every style appears once among the first listeners (so even `tiny` has each), then styles are drawn.
    order = list(_rng(seed, 2).permutation(len(STYLES)))
    out = []
    for i in range(spec.num_annotators):
        rng = _rng(seed, 3, i)
        style = STYLES[order[i]] if i < len(order) else STYLES[int(rng.choice(len(STYLES), p=STYLE_PROBABILITIES))]
        out.append((make_listener(f"L{i:0{width}d}", style, rng), None))
    for k, partition in enumerate(extra):
        i = spec.num_annotators + k
        out.append((make_listener(f"L{i:0{width}d}", STYLES[k % len(STYLES)], _rng(seed, 7, i)), partition))
    return out


def generate_records(spec: SyntheticSpec, seed: int) -> tuple[list[SongPlan], list[Listener], list[Record], list[Record]]:
    """Songs, listeners, per-listener records (pdmer) and per-song averaged records (dmer); no audio."""
    plans = song_plans(spec, seed)
    people = listeners(spec, seed)
    features = {p.song_id: frame_features(p) for p in plans}
    base_ids = [person.annotator_id for person, partition in people if partition is None]
    test_people = held_out(base_ids, spec.test_annotator_fraction, seed, "synthetic-listeners")
    pdmer: list[Record] = []
    for i, (person, partition) in enumerate(people):
        rng = _rng(seed, 4, i)
        unseen = partition == "test_unseen"
        pool = list(range(spec.num_songs, len(plans))) if unseen else list(range(spec.num_songs))
        low, high = spec.unseen_songs_per_annotator if unseen else spec.songs_per_annotator
        count = min(int(rng.integers(low, high + 1)), len(pool))
        chosen = sorted(pool[k] for k in rng.choice(len(pool), size=count, replace=False))
        if partition is None:
            partition = "test" if person.annotator_id in test_people else "train"
        info = person.info()
        for j in chosen:
            a, v = person.perceive(features[plans[j].song_id], _rng(seed, 5, i, int(j)))
            pdmer.append(Record(plans[j].song_id, person.annotator_id, a, v, 0.0, FRAME_RATE, partition, info))
    return plans, [person for person, _ in people], pdmer, _averaged_records(spec, seed, plans, pdmer)


def _averaged_records(spec: SyntheticSpec, seed: int, plans: list[SongPlan], pdmer: list[Record]) -> list[Record]:
    """dmer: known songs averaged over the train listeners only (no held-out listener's labels leak into
    training), unseen songs over their own listeners (the test split: songs no one rated in training)."""
    by_song: dict[str, list[Record]] = {}
    for record in pdmer:
        if record.partition in ("train", "test_unseen"):
            by_song.setdefault(record.song_id, []).append(record)
    songs = [p.song_id for p in plans if p.song_id in by_song]
    unseen = {p.song_id for p in plans[spec.num_songs:]}
    known = [s for s in songs if s not in unseen]
    test = unseen if unseen else held_out(known, spec.test_song_fraction, seed, "synthetic-dmer-test")
    validation = held_out([s for s in known if s not in test], spec.validation_song_fraction, seed,
                          "synthetic-dmer-validation")
    dmer = []
    for song_id in songs:
        rows = by_song[song_id]
        partition = "test" if song_id in test else "validation" if song_id in validation else "train"
        dmer.append(Record(
            song_id, AVERAGE_ANNOTATOR,
            np.mean([r.arousal for r in rows], axis=0).astype(np.float32),
            np.mean([r.valence for r in rows], axis=0).astype(np.float32),
            0.0, FRAME_RATE, partition, {"listeners": len(rows)},
        ))
    return dmer


def reference_curves(spec: SyntheticSpec, seed: int) -> tuple[dict, dict]:
    """The two references a personalization result is measured against, per song and per (listener, song):

    - population: `{song_id: [frames, 2]}` the known emotion function (arousal, valence), no listener;
    - oracle: `{(annotator, song_id): [frames, 2]}` what that listener hears without the hand's noise
      (clipped to the slider's range like the annotations): the best any model of the listener could do.
    Both are exact functions of the generator (no audio needed)."""
    plans = {p.song_id: p for p in song_plans(spec, seed)}
    features = {song_id: frame_features(plan) for song_id, plan in plans.items()}
    population = {song_id: np.stack(population_emotion(f), axis=1) for song_id, f in features.items()}
    oracle = {}
    _, people, pdmer, _ = generate_records(spec, seed)
    by_id = {person.annotator_id: person for person in people}
    for record in pdmer:
        heard = by_id[record.annotator].noise_free(features[record.song_id])
        oracle[(record.annotator, record.song_id)] = np.clip(np.stack(heard, axis=1), -1.0, 1.0)
    return population, oracle


def _seconds_range(bounds: tuple[float, float]) -> str:
    low, high = bounds
    return f"{low:g} s" if low == high else f"{low:g}-{high:g} s"


def _doc_between(start: str, end: str | None) -> str:
    """A part of this module's docstring (up to `end`, or its end), so the card and the code say the same."""
    text = __doc__ or ""
    return text[text.index(start): text.index(end) if end else len(text)].strip()


def _partitions_text(pdmer: list[Record], dmer: list[Record]) -> str:
    """The card's partition section: the rule (module docstring) and the counts of this build."""
    lines = []
    for partition in ("train", "validation", "test", "test_unseen"):
        rows = [r for r in pdmer if r.partition == partition]
        if rows:
            styles = sorted({r.annotator_info["style"] for r in rows})
            lines.append(f"- `pdmer` `{partition}`: {len({r.annotator for r in rows})} listeners, {len(rows)} rows, "
                         f"{len({r.song_id for r in rows})} songs; styles {', '.join(styles)}")
    for partition in ("train", "validation", "test"):
        count = sum(r.partition == partition for r in dmer)
        if count:
            lines.append(f"- `dmer` `{partition}`: {count} songs")
    return "\n".join(lines) + "\n\n" + _doc_between("Partitions (fixed", None)


def build_synthetic(
    output: str | os.PathLike,
    *,
    size: str = "small",
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = False,
    **spec_overrides,
) -> Path:
    """Generate the synthetic dataset folder (`size` preset, optionally with SyntheticSpec field overrides)."""
    from tqdm.auto import tqdm

    spec = spec_for(size, **spec_overrides)
    if spec.num_songs < 1 or spec.num_annotators < 1:
        raise ValueError("a synthetic dataset needs at least one song and one annotator")
    plans, people, pdmer, dmer = generate_records(spec, seed)
    writer = DatasetFolderWriter(output, overwrite=overwrite, progress=progress)
    for i, plan in enumerate(tqdm(plans, desc="synthesising audio", unit="song", disable=not progress)):
        writer.add_audio_array(plan.song_id, render(plan, _rng(seed, 6, i), spec.sample_rate), spec.sample_rate)
    write_configs(writer, ["dmer", "pdmer", "pdmer_flat"], dmer, pdmer)

    styles = {s: sum(p.style == s for p in people) for s in STYLES}
    card = CardInfo(
        pretty_name=f"dsaml synthetic PDMER ({size}, seed {seed})",
        summary=(
            f"A synthetic dataset for personalized dynamic music emotion recognition: {len(plans)} generated songs "
            f"({_seconds_range(spec.song_seconds)}, {spec.sample_rate} Hz FLAC) whose tempo, loudness, "
            f"brightness and mode change over time, annotated every 0.5 s by {len(people)} simulated listeners "
            "who each perceive the known emotion function in their own way (bias, gain, curvature, lag, noise, "
            "inverted or re-weighted dimensions). Generated by `dsaml prepare synthetic` "
            f"(generator version {GENERATOR_VERSION}); deterministic from the seed."
        ),
        source="Generated by `dsaml.datasets_scripts.synthetic.synthetic`: no third-party data.",
        license="apache-2.0",
        license_text="Generated data, released under the Apache License 2.0 like the dsaml package.",
        value_range=(-1.0, 1.0),
        partitions=_partitions_text(pdmer, dmer),
        extra_sections=[
            ("Emotion function and listeners", _doc_between("Emotion (population ground truth)", "Configs:")),
            ("Listener styles in this build", ", ".join(f"`{s}`: {n}" for s, n in styles.items())),
        ],
        tags=["synthetic"],
    )
    summary = {
        "dataset": "synthetic",
        "generator_version": GENERATOR_VERSION,
        "options": {"size": size, "seed": seed, "spec": asdict(spec)},
        "songs": len(plans),
        "annotators": len(people),
        "song_plans": {p.song_id: p.to_dict() for p in plans},
    }
    return writer.finish(card, DropReport(), summary)
