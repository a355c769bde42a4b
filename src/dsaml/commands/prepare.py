"""`dsaml prepare {deam,pmemo,synthetic,vgmidi}`: build a Hub-ready dataset folder, optionally publish it.

    dsaml prepare synthetic --output data/synthetic [--size small] [--seed 0]
    dsaml prepare deam --source ~/DEAM --output data/deam [--push-to-hub user/deam-pdmer --private]
    dsaml prepare pmemo --source ~/PMEmo2019 --output data/pmemo [--rescale-to-minus1-1]
    dsaml prepare vgmidi --source ~/vgmidi --output data/vgmidi [--renderer fluidsynth --soundfont piano.sf2]

Publishing uploads the finished folder with `HfApi().upload_folder(repo_type="dataset")`, not
`DatasetDict.push_to_hub`: the folder already holds the README configs and Parquet files the Hub reads, and
only a folder upload carries the `audio/` files the rows point to. The token comes from `huggingface_hub`'s
usual sources (`HF_TOKEN`, `hf auth login`) and is never printed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from dsaml.commands.boundary import reports_errors
from dsaml.data.datasets import dataset_metadata
from dsaml.datasets_scripts import build_deam, build_pmemo, build_synthetic
from dsaml.datasets_scripts.vgmidi import vgmidi as vgmidi_builder
from dsaml.datasets_scripts.vgmidi.vgmidi import build_from_args
from dsaml.utils.hub import upload_folder

logger = logging.getLogger("dsaml.commands.prepare")


def _common(parser: argparse.ArgumentParser, *, source: bool) -> None:
    if source:
        parser.add_argument("--source", required=True, type=Path, help="the unpacked official release")
    parser.add_argument("--output", required=True, type=Path, help="the dataset folder to write")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice (default: 0)")
    parser.add_argument("--overwrite", action="store_true", help="rebuild an existing dsaml dataset folder")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="upload the folder to this Hub dataset repo")
    parser.add_argument("--private", action="store_true", help="create the Hub repo private")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")


def _release(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--configs", nargs="+", choices=("dmer", "pdmer", "pdmer_flat"),
                        help="configs to build (default: all the source supports)")
    parser.add_argument("--validation-fraction", type=float, default=0.05,
                        help="seeded fraction of the train songs held out for validation (default: 0.05)")
    parser.add_argument("--flatness-threshold", type=float, default=0.01,
                        help="drop (song, annotator) curves whose mean absolute deviation over the first 60 "
                             "values is below this (official: 0.01; 0 disables)")
    parser.add_argument("--min-songs-per-annotator", type=int, default=16,
                        help="drop annotators with fewer songs in a partition (official: 16)")
    parser.add_argument("--features", action="store_true", help="add the openSMILE features column")
    parser.add_argument("--audio-mode", choices=("copy", "reference"), default="copy",
                        help="copy the audio into the folder (default) or store absolute paths to the release")
    parser.add_argument("--allow-missing-audio", action="store_true",
                        help="keep songs without audio (audio = \"\"), for label-only use")
    parser.add_argument("--strict", action="store_true", help="fail on the first problem instead of skipping")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dsaml prepare", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="dataset", required=True, metavar="{deam,pmemo,synthetic,vgmidi}")

    deam = sub.add_parser("deam", help="DEAM (official layout: DEAM_Annotations/, MEMD_audio/)")
    _common(deam, source=True)
    _release(deam)
    deam.add_argument("--include-average-annotator", action="store_true",
                      help="add each song's averaged curve as annotator 'average' to pdmer (reference-code quirk)")
    deam.add_argument("--all-song-ranges", action="store_true",
                      help="keep per-rater songs with ids <= 1000 (left out by the official protocol)")

    pmemo = sub.add_parser("pmemo", help="PMEmo2019 (annotations/, chorus/, metadata.csv)")
    _common(pmemo, source=True)
    _release(pmemo)
    pmemo.add_argument("--test-fraction", type=float, default=0.2, help="seeded fraction of songs for dmer test")
    pmemo.add_argument("--test-annotator-fraction", type=float, default=0.2,
                       help="seeded fraction of listeners held out as pdmer test")
    pmemo.add_argument("--rescale-to-minus1-1", action="store_true", help="map PMEmo's [0, 1] values to [-1, 1]")

    synthetic = sub.add_parser("synthetic", help="the synthetic PDMER set (no download)")
    _common(synthetic, source=False)
    synthetic.add_argument("--size", choices=("tiny", "small", "large"), default="small",
                           help="tiny: tests; small: the README default; large: 500 listeners (benchmarks)")


    vgmidi = sub.add_parser("vgmidi", help="VGMIDI (labelled/annotations/*.json, labelled/midi/): audio from the MIDI")
    _common(vgmidi, source=True)
    vgmidi_builder.add_arguments(vgmidi)
    return parser


def build(args: argparse.Namespace) -> Path:
    progress = not args.quiet
    if args.dataset == "vgmidi":
        return build_from_args(args, progress)
    if args.dataset == "synthetic":
        return build_synthetic(args.output, size=args.size, seed=args.seed, overwrite=args.overwrite, progress=progress)
    common = dict(
        configs=args.configs, validation_fraction=args.validation_fraction, seed=args.seed,
        flatness_threshold=args.flatness_threshold, min_songs_per_annotator=args.min_songs_per_annotator,
        include_features=args.features, require_audio=not args.allow_missing_audio, audio_mode=args.audio_mode,
        overwrite=args.overwrite, strict=args.strict, progress=progress,
    )
    if args.dataset == "deam":
        return build_deam(args.source, args.output, include_average_annotator=args.include_average_annotator,
                          official_song_ranges=not args.all_song_ranges, **common)
    return build_pmemo(args.source, args.output, test_fraction=args.test_fraction,
                       test_annotator_fraction=args.test_annotator_fraction,
                       rescale_to_minus1_1=args.rescale_to_minus1_1, **common)


def push_folder(folder: Path, repo_id: str, *, private: bool = False) -> str:
    """Upload a built folder to a Hub dataset repo (created if needed); returns the repo URL."""
    if dataset_metadata(folder).get("audio_mode") == "reference":
        raise ValueError(
            f"{folder} references audio by absolute local paths (--audio-mode reference): rebuild it with "
            "--audio-mode copy before publishing"
        )
    info = upload_folder(folder, repo_id, repo_type="dataset", private=private,
                         commit_message="Upload dataset built with dsaml prepare")
    return str(info.repo_url)


@reports_errors("dsaml prepare")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(message)s")
    folder = build(args)
    print(f"dataset written to {folder}")
    if args.push_to_hub:
        url = push_folder(folder, args.push_to_hub, private=args.private)
        print(f"pushed to {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
