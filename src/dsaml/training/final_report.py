"""The end of a training run: `last/` exported, `best/` scored (and calibrated), results, model cards, plot, push."""

from __future__ import annotations

import json
from pathlib import Path

from dsaml.adaptation.config import personalization_config
from dsaml.evaluation.summary import format_summary, summarize
from dsaml.inference.loading import load_model
from dsaml.training.calibration import calibrate_share
from dsaml.training.checkpoints import export_model
from dsaml.training.model_card import write_model_card
from dsaml.training.run import Run, evaluate
from dsaml.utils.files import atomic_write_text
from dsaml.utils.hub import push_model_folder
from dsaml.utils.plots import plot_training

__all__ = ["finish"]


def finish(run: Run) -> dict:
    """Export last/, reload best/, score it on validation and test, write results, card, plot; push."""
    args, accelerator, data, output_dir = run.args, run.accelerator, run.data, run.output_dir
    if accelerator.is_main_process:
        export_model(run.model, run.extractor, output_dir / "last")
    accelerator.wait_for_everyone()
    best_dir = output_dir / "best"
    best = load_model(best_dir).to(accelerator.device)
    final = {"best_step": run.state["best_step"], f"best/{args.select_metric}": run.state["best_score"],
             **run.state.get("average_readout", {})}
    if args.calibrate_adaptation:
        final.update(calibrate(run, best, best_dir))
    results = {"validation": evaluate(run, best, data.validation, data.final_validation_tasks)}
    for name, (store, tasks) in data.tests.items():
        if tasks:
            results[name] = evaluate(run, best, store, tasks)
    for name, partition in results.items():
        final.update(summarize(partition, name))
    if accelerator.is_main_process:
        _write_outputs(run, final, results, best)
    accelerator.wait_for_everyone()
    return final


def calibrate(run: Run, best, best_dir: Path) -> dict:
    """The share of the inner loop's step kept per dimension and the longest reaction lag, chosen on the final
    report's validation tasks (`dsaml.training.calibration`; every process scores its share of them), written into
    `best/`'s personalization config."""
    from accelerate.utils import gather_object

    accelerator, tasks = run.accelerator, run.data.final_validation_tasks
    gather = gather_object if accelerator.num_processes > 1 else None
    mine = tasks[accelerator.process_index :: accelerator.num_processes]
    with accelerator.autocast():  # as the final report's `evaluate` scores them
        share, max_delay, info = calibrate_share(best, run.data.validation, mine, device=accelerator.device,
                                                 progress=run.progress, gather=gather)
    best.personalization_config = personalization_config(best).replace(share=list(share), max_delay=int(max_delay))
    if accelerator.is_main_process:  # only the recipe changes: the weights and config.json stay as exported
        best.personalization_config.save_pretrained(best_dir)
        print("adaptation share (validation listeners): " + ", ".join(
            f"{dim} {info[dim]['share']:.2f} (RMSE {info[dim]['rmse_meta_trained']:.3f} -> "
            f"{info[dim]['rmse_calibrated']:.3f}; unpersonalized {info[dim]['rmse_unpersonalized']:.3f})"
            for dim in ("arousal", "valence")) + lag_line(info))
    accelerator.wait_for_everyone()
    out = {f"calibration/{dim}/{key}": info[dim][key] for dim in ("arousal", "valence")
           for key in ("share", "rmse_unpersonalized", "rmse_meta_trained", "rmse_calibrated")}
    out.update({f"calibration/lag_{lag}/rmse": scored["rmse_calibrated"] for lag, scored in info["delays"].items()})
    return dict(out, **{"calibration/max_delay": max_delay})


def lag_line(info: dict) -> str:
    """The calibrated longest reaction lag, and what no lag scored, for the line `calibrate` prints."""
    if list(info["delays"]) == [0]:
        return ""
    lag = info["max_delay"]
    if not lag:
        return "; reaction lag up to 0 steps (a longer one did not lower the mean RMSE)"
    return (f"; reaction lag up to {lag} steps (mean RMSE {info['delays'][lag]['rmse_calibrated']:.3f}, "
            f"without a lag {info['delays'][0]['rmse_calibrated']:.3f})")


def _write_outputs(run: Run, final: dict, results: dict[str, list], best) -> None:
    """test_results.json, the model cards of best/ and last/, training_curves.png, the summary; the Hub push."""
    from dataclasses import asdict

    args, output_dir = run.args, run.output_dir
    atomic_write_text(output_dir / "test_results.json", json.dumps({
        "summary": final, **{name: [asdict(r) for r in partition] for name, partition in results.items()},
    }, indent=1, default=float))
    for folder in (output_dir / "best", output_dir / "last"):
        write_model_card(folder, config=best.config, recipe=personalization_config(best), metrics=final,
                         training_args=args.to_dict(), dataset=args.dataset)
    plot_training(run.log.read(), output_dir / "training_curves.png")
    print(_summary_text(final))
    if args.push_to_hub:
        url = push_model_folder(output_dir / "best", args.hub_model_id, private=args.hub_private)
        print(f"pushed {output_dir / 'best'} to {url}")


def _summary_text(final: dict) -> str:
    lines = [f"best step {final['best_step']} (selected on validation annotators)"]
    # every partition `summarize` reported (its own `<split>/annotators`), validation first
    splits = sorted((k.split("/")[0] for k in final if k.count("/") == 1 and k.endswith("/annotators")),
                    key=lambda s: (s != "validation", s))
    for split in splits:
        prefix = f"{split}/"
        lines.append(format_summary({k[len(prefix):]: v for k, v in final.items() if k.startswith(prefix)},
                                    title=split))
    return "\n".join(lines)
