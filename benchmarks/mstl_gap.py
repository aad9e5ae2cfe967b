"""Where the model's error exceeds MSTL's: per horizon step, over time, bias, on eval and test.

For each kept run of ``benchmarks.accuracy --keep`` this reads every eval and test window, forecasts
them with the run's models (the Trainer's model A, trained on train only, on both splits; the
RefitTrainer's model B, the pushed one, on test) and with statsforecast's MSTL fitted at each origin
the way ``benchmarks.accuracy`` fits it, and with the seasonal base of the primary period that the
model's mix starts from (:func:`components.transform.seasonal_bases`' mean profile) computed from
the last K cycles of the series for several K: how much a longer context would give the base.

Each forecaster's MAE over MSTL's, overall, on the first and last three steps, and per quarter of
the split's windows (by origin); its bias (mean forecast minus actual). Prints a table per set and
split, and one JSON line.

Usage:
  tools/in-env python -m benchmarks.mstl_gap --runs DIR [--datasets hyndsight,gasoline] [--cycles 5,8,12]
"""

import contextlib
import glob
import json
import os
import sys
from typing import Any, Optional

import numpy as np

import benchmarks
from benchmarks.accuracy import print_table

# Steps at each end of the horizon reported on their own: where a lagging level shows (first) and
# where the seasonal shape or the trend does (last).
END_STEPS = 3
# Parts of a split, by origin, whose errors are reported apart: whether the gap is everywhere or in
# one stretch.
TIME_PARTS = 4


def error_profile(actual: np.ndarray, forecast: np.ndarray, reference: np.ndarray,
                  end_steps: int = END_STEPS, parts: int = TIME_PARTS) -> dict[str, Any]:
    """A forecast's MAE and bias, and its MAE over a reference forecaster's, overall, by step and over time.

    Args:
      actual: ``[n, H]``, rows in order of origin.
      forecast: ``[n, H]``.
      reference: ``[n, H]``: the forecaster the ratios are over (MSTL).
      end_steps: Steps at each end of the horizon reported apart.
      parts: Consecutive parts of the rows (time, when the rows are in order of origin).

    Returns:
      ``mae``, ``bias``, ``over``: MAE over the reference's; ``first``/``last``: the same on the first
      and last ``end_steps`` steps; ``by_step`` ``[H]`` and ``by_part`` ``[parts]``: the ratio per step
      and per part of the rows.
    """
    error = np.abs(np.asarray(forecast, np.float64) - actual)
    base = np.abs(np.asarray(reference, np.float64) - actual)
    ratio = lambda a, b: float(a.mean() / b.mean())  # noqa: E731
    rows = np.array_split(np.arange(len(actual)), parts)
    return {"mae": float(error.mean()), "bias": float(np.mean(forecast - actual)), "over": ratio(error, base),
            "first": ratio(error[:, :end_steps], base[:, :end_steps]),
            "last": ratio(error[:, -end_steps:], base[:, -end_steps:]),
            "by_step": [ratio(error[:, h], base[:, h]) for h in range(actual.shape[1])],
            "by_part": [ratio(error[r], base[r]) for r in rows if len(r)]}


def profile_base(values: np.ndarray, origins: np.ndarray, horizon: int, period: int, cycles: int) -> np.ndarray:
    """The mix's mean-profile base (:func:`components.transform.seasonal_bases`' ``profile``) from the
    last ``cycles`` cycles up to each origin of ``values``, ``[n, H]``; NaN rows where the series is shorter."""
    from components import windowing
    phase = period - 1 + windowing.seasonal_lag_offsets(horizon, period)
    out = np.full((len(origins), horizon), np.nan)
    for row, origin in enumerate(origins):
        if origin + 1 < cycles * period:
            continue
        stacked = values[origin + 1 - cycles * period:origin + 1].reshape(cycles, period)
        profile = (stacked - stacked.mean(axis=1, keepdims=True)).mean(axis=0)
        out[row] = stacked[-1].mean() + profile[phase]
    return out


def load_set(runs: str, name: str, cycles: list[int]) -> dict[str, dict[str, Any]]:
    """Per split: the actual values and each forecaster's forecasts of every window of a kept run."""
    from benchmarks import accuracy, kept_run
    from benchmarks import datasets as datasets_lib
    from benchmarks.refit import trainer_inputs
    from pipeline import local_runner
    spec = datasets_lib.DATASETS[name]
    run = os.path.join(runs, name, "run")
    data = glob.glob(os.path.join(runs, name, "data", "*"))[0]
    with contextlib.redirect_stdout(sys.stderr):
        _, _, _, raw = trainer_inputs(run)
        store, pipeline_name = kept_run(run)
    model = lambda node: accuracy.load_model_outputs(os.path.join(  # noqa: E731
        local_runner.output_artifact(store, pipeline_name, node, "model", 0).uri, "Format-Serving"))
    models = {"A": model("Trainer"), "B": model("RefitTrainer")}
    grids = accuracy.series_grids(accuracy.pipeline_config(spec, data, run, None))
    out = {}
    for split in ("eval", "test"):
        windows = accuracy.read_test_windows(raw, split)
        indices = accuracy.origin_indices(windows, grids)
        baselines, _ = accuracy.baseline_forecasts(spec, windows, grids, indices)
        forecasts = {"A": models["A"](windows.records)[0]}
        if split == "test":
            forecasts["B"] = models["B"](windows.records)[0]
        forecasts["seasonal naive"] = baselines[accuracy.seasonal_naive_name(spec.primary_period)]
        horizon = windows.targets.shape[1]
        for k in cycles:
            bases = np.concatenate([
                profile_base(accuracy.filled(grids[s].target.astype(np.float64)), indices[windows.series_ids == s],
                             horizon, spec.primary_period, k) for s in np.unique(windows.series_ids)])
            if not np.isnan(bases).any():
                forecasts[f"profile base, {k} cycles"] = bases
        out[split] = {"actual": windows.targets.astype(np.float64), "MSTL": baselines[accuracy.MSTL],
                      "forecasts": forecasts, "context": windows.histories.shape[1]}
    return out


def main(argv: Optional[list[str]] = None) -> int:
    parser = benchmarks.kept_runs_parser(__doc__.splitlines()[0], datasets="hyndsight,gasoline")
    parser.add_argument("--cycles", default="5,8,12", help="cycles of context for the profile base")
    args, names = benchmarks.parse_kept_runs(parser, argv)
    if names is None:
        return 2
    cycles = [int(c) for c in args.cycles.split(",") if c]
    results: dict[str, Any] = {}
    for name in names:
        data = load_set(args.runs, name, cycles)
        results[name] = {}
        for split, d in data.items():
            profiles = {f: error_profile(d["actual"], forecast, d["MSTL"]) for f, forecast in d["forecasts"].items()}
            profiles["MSTL"] = error_profile(d["actual"], d["MSTL"], d["MSTL"])
            results[name][split] = {"windows": len(d["actual"]), "context": d["context"], "forecasters": profiles}
            rows = [[f, f"{p['mae']:.4g}", f"{p['bias']:+.3g}", f"{p['over']:.3f}", f"{p['first']:.3f}",
                     f"{p['last']:.3f}", " ".join(f"{r:.2f}" for r in p["by_part"])] for f, p in profiles.items()]
            print_table(f"{name} {split}: {len(d['actual'])} windows, context {d['context']} (MAE over MSTL's)",
                        ["forecaster", "MAE", "bias", "/MSTL", f"first {END_STEPS}", f"last {END_STEPS}",
                         f"by {TIME_PARTS} parts of the split"], rows)
    print(json.dumps({"benchmark": "mstl_gap", "datasets": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
