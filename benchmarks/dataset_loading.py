"""Dataset loading times: one annotator split of the 500-listener synthetic set (`synthetic:large`), all of
them, and the training path (one `pdmer_flat` split filtered by the `annotator` column).

Every "cold" figure uses a fresh, empty `datasets` cache (Parquet -> Arrow conversion included); "warm" is the
same call again with that cache. The dataset folder itself is built once into the dsaml cache
(`$DSAML_CACHE`, default ~/.cache/dsaml; the build time is reported when this run built it).

    python benchmarks/dataset_loading.py          # synthetic:large (500 listeners)
    python benchmarks/dataset_loading.py --quick  # synthetic:small (24 listeners)
"""

from __future__ import annotations

import tempfile
import time

import common


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main() -> None:
    p = common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--size", default=None, choices=("tiny", "small", "large"))
    p.add_argument("--skip-all-splits", action="store_true", help="do not time loading every split")
    args = p.parse_args()
    common.setup(args.threads)
    import datasets

    from dsaml.data.datasets import annotator_split_name, dataset_root

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    size = args.size or ("small" if args.quick else "large")
    root, build_s = timed(lambda: dataset_root(f"synthetic:{size}"))
    files = list((root / "pdmer").glob("*.parquet"))
    figures = {"dataset": f"synthetic:{size}", "annotator_splits": len(files), "build_or_cache_lookup_s": build_s,
               "folder_mib": sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) / 2**20}
    annotator = "L" + "0" * (max(3, len(str(len(files) - 1))) - 1) + "7"
    split = annotator_split_name(annotator)

    with tempfile.TemporaryDirectory() as cache:
        one, cold = timed(lambda: datasets.load_dataset(str(root), "pdmer", split=split, cache_dir=cache))
        _, warm = timed(lambda: datasets.load_dataset(str(root), "pdmer", split=split, cache_dir=cache))
    figures["one_split"] = {"split": split, "rows": one.num_rows, "cold_s": cold, "warm_s": warm}
    print(f"one annotator split ({split}, {one.num_rows} rows) of {len(files)}: cold {cold:.2f} s, warm {warm:.2f} s")

    with tempfile.TemporaryDirectory() as cache:
        flat, cold = timed(lambda: datasets.load_dataset(str(root), "pdmer_flat", split="train", cache_dir=cache))
        rows, filter_s = timed(lambda: flat.filter(lambda a: a == annotator, input_columns="annotator"))
    figures["flat_train_split"] = {"rows": flat.num_rows, "cold_s": cold, "filter_one_annotator_s": filter_s,
                                   "filtered_rows": rows.num_rows}
    print(f"pdmer_flat train ({flat.num_rows} rows): cold {cold:.2f} s; filter one annotator {filter_s:.3f} s")

    if not args.skip_all_splits:
        with tempfile.TemporaryDirectory() as cache:
            every, cold = timed(lambda: datasets.load_dataset(str(root), "pdmer", cache_dir=cache))
        figures["all_splits"] = {"splits": len(every), "rows": sum(d.num_rows for d in every.values()), "cold_s": cold}
        print(f"all {len(every)} annotator splits: cold {cold:.2f} s")
    common.write_result("dataset_loading", figures, args=args, path=args.output)


if __name__ == "__main__":
    main()
