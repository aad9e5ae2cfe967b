"""The refit on train+eval: a fresh fit (the pipeline's RefitTrainer) against a warm start from the Trainer's model.

For each kept run of ``benchmarks.accuracy --keep`` (its Transform outputs, Examples and the
Trainer's settings from ML Metadata) this trains, in one process and from the same seed:

* **A**: the Trainer's model, on train with early stopping on eval, calibrated on eval (baseline);
* **fresh**: the same model afresh on train+eval for A's best epoch count (what the pipeline pushes);
* **warm**: A itself, trained on train+eval for a further ``ceil(A's epochs x eval / train
  windows)`` epochs (as many steps as the added data's share), optimizer state kept;

each exported with A's calibration and scored on every test window of the run: MAE, coverage of
the 80% and 95% intervals, and the ratio of each MAE to A's. Prints a table and one JSON line.

Usage:
  tools/in-env python -m benchmarks.refit --runs DIR [--datasets hyndsight,usmelec]
"""

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
import time
from typing import Any, Optional

import numpy as np

from benchmarks import data_accessor, kept_run, split_files
from benchmarks.accuracy import load_model_outputs, print_table, read_test_windows


def trainer_inputs(run_dir: str) -> tuple[dict[str, Any], str, str, str]:
    """The Trainer's custom config, transform graph, transformed examples and raw examples of a kept run."""
    from pipeline import local_runner
    store, name = kept_run(run_dir)
    executions = [e for node, e in local_runner.node_executions(store, name, 0) if node == "Trainer"]
    custom_config = json.loads(executions[-1].custom_properties["custom_config"].string_value)
    uri = lambda node, key: local_runner.output_artifact(store, name, node, key, 0).uri  # noqa: E731
    return (custom_config, uri("Transform", "transform_graph"), uri("Transform", "transformed_examples"),
            uri("TimeSeriesExampleGen", "examples"))


def _score(model_dir: str, windows) -> dict[str, float]:
    from components import quantiles as quantiles_lib
    forecast, quantiles, levels = load_model_outputs(model_dir)(windows.records)
    actual = windows.targets.astype(np.float64)
    scores = {"mae": float(np.mean(np.abs(actual - forecast)))}
    hits = quantiles_lib.covered(actual, quantiles, levels).reshape(-1, len(quantiles_lib.interval_pairs(levels)))
    for i, (_, _, coverage) in enumerate(quantiles_lib.interval_pairs(levels)):
        scores[f"coverage_{round(100 * coverage)}"] = float(hits[:, i].mean())
    return scores


def benchmark_run(run_dir: str) -> dict[str, Any]:
    """A, fresh and warm on one kept run (see the module docstring)."""
    import tensorflow_transform as tft

    from components import features, quantiles, trainer, trainer_options
    custom_config, graph, transformed, raw = trainer_inputs(run_dir)
    model_config = trainer_options.model_config_from_dict(custom_config["model"])
    history, horizon = int(custom_config["windows"]["history"]), int(custom_config["windows"]["horizon"])
    tft_output = tft.TFTransformOutput(graph)
    accessor = data_accessor(transformed)
    train, evaluation = split_files(transformed, "train"), split_files(transformed, "eval")
    spread_period = quantiles.spread_period(int(tft_output.raw_feature_spec()[features.HISTORY].shape[0]),
                                            custom_config["windows"].get("seasonal_periods", ()))
    test = read_test_windows(raw)
    scores, seconds = {}, {}
    with tempfile.TemporaryDirectory() as tmp:

        def score(name: str, model) -> None:
            export = os.path.join(tmp, name)
            trainer.export_serving_model(model, tft_output, export, model_config, adjustments=adjustments,
                                         spread_period=spread_period)
            scores[name] = _score(export, test)

        started = time.perf_counter()
        a = trainer.fit(train, evaluation, accessor, tft_output, history, horizon, model_config)
        seconds["A"] = time.perf_counter() - started
        adjustments, _ = trainer.calibrate(a.model, evaluation, accessor, tft_output, model_config, spread_period)
        score("A", a.model)  # before the warm start moves its weights
        started = time.perf_counter()
        fresh = trainer.fit(train + evaluation, None, accessor, tft_output, history, horizon,
                            trainer.refit_config(model_config, a.epochs, a.base_mix_fit))
        seconds["fresh"] = time.perf_counter() - started
        score("fresh", fresh.model)
        # As many steps as the added windows' share of A's training.
        warm_epochs = max(1, math.ceil(a.epochs * (fresh.windows - a.windows) / a.windows))
        started = time.perf_counter()
        data = trainer.make_dataset(train + evaluation, accessor, tft_output, model_config.batch_size, True,
                                    model_config.seed)
        trainer.training_model(a.model, model_config).fit(data, epochs=warm_epochs, verbose=0)
        seconds["warm"] = time.perf_counter() - started
        score("warm", a.model)
    return {"epochs": a.epochs, "warm_epochs": warm_epochs, "scores": scores, "seconds": seconds,
            "windows": {"train": a.windows, "train+eval": fresh.windows}}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", required=True, help="the --output-dir of a `benchmarks.accuracy --keep` run")
    parser.add_argument("--datasets", default="", help="comma-separated data sets under --runs (default: all)")
    args = parser.parse_args(argv)
    names = [n for n in args.datasets.split(",") if n] or sorted(
        d for d in os.listdir(args.runs) if os.path.isdir(os.path.join(args.runs, d, "run")))
    # Keras prints each epoch on standard output: the table and the JSON line alone go there.
    with contextlib.redirect_stdout(sys.stderr):
        results = {name: benchmark_run(os.path.join(args.runs, name, "run")) for name in names}
    header = ["data set", "A epochs", "warm epochs", "MAE A", "fresh / A", "warm / A", "cov 80 A / fresh / warm",
              "cov 95 A / fresh / warm", "fit s A / fresh / warm"]
    rows = []
    for name, r in results.items():
        s, t = r["scores"], r["seconds"]
        rows.append([name, r["epochs"], r["warm_epochs"], f"{s['A']['mae']:.4g}",
                     f"{s['fresh']['mae'] / s['A']['mae']:.3f}", f"{s['warm']['mae'] / s['A']['mae']:.3f}",
                     " / ".join(f"{s[m]['coverage_80']:.2f}" for m in ("A", "fresh", "warm")),
                     " / ".join(f"{s[m]['coverage_95']:.2f}" for m in ("A", "fresh", "warm")),
                     " / ".join(f"{t[m]:.0f}" for m in ("A", "fresh", "warm"))])
    print_table("test MAE and coverage of the refit on train+eval: fresh fit against warm start (A: train only)",
                header, rows)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
