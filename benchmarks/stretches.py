"""Accuracy over several stretches of every series: the real test split and backtest folds, pooled.

One data set's test split is one stretch of time (40 overlapping windows of a single series), and
a verdict on it often does not carry to the next stretch (README, Benchmarks). This runs
:mod:`benchmarks.accuracy` once per cut into ``<output-dir>/cut-<F>`` (cut 0: the real test split;
F > 0: the backtest fold that drops the last F of every set's span, ``--backtest-cut F``), or reads
the runs already there (``--pool-only``), and pools each data set's windows over the cuts:

* the model's MAE over MSTL's and over AutoTheta's, on the scored windows of every stretch;
* the coverage of the model's 80% and 95% intervals, on every test window of every stretch;

each with a 90% band: Newey-West within a stretch (as the accuracy benchmark's own bands), the
stretches independent of each other (:func:`benchmarks.accuracy_metrics.ratio_band`,
:func:`~benchmarks.accuracy_metrics.fraction_band`); where a stretch has too few origins for a band of its own
(visnights: 5-9 a stretch), the stretches' origins as one series
(:func:`~benchmarks.accuracy_metrics.joined_if_short`). A verdict is printed only where the band
excludes 1 or the nominal coverage. The means over data sets of the pooled figures are what a
default can be chosen on; a set that failed on some cut is left out and named.

Each cut's own tables go to ``<output-dir>/cut-<F>/accuracy.txt`` and its JSON line to
``accuracy.json`` beside it; this prints the pooled tables and one JSON line. With ``--jobs N`` the
cuts run N at a time, each in a child process whose progress lines go to ``progress.log`` in its
directory (the same figures: the pipelines are seeded).

Usage:
  tools/in-env python -m benchmarks.stretches --output-dir DIR [--cuts 0,0.15,0.3] [--datasets a,b]
      [--model-flags="--seed 1"] [--keep] [--pool-only] [--jobs 2]
"""

import argparse
import concurrent.futures
import contextlib
import json
import os
import subprocess
import sys
import time
from typing import Any, Optional, Sequence

import numpy as np

from benchmarks import REPO, accuracy
from benchmarks import accuracy_metrics as am
from benchmarks import datasets as datasets_lib

DEFAULT_CUTS = (0.0, 0.15, 0.3)
# Each cut's directory holds its tables and, run as a child process (--jobs), its progress lines.
TABLES_FILE, PROGRESS_FILE = "accuracy.txt", "progress.log"
ACCURACY_COMMAND = (sys.executable, "-m", "benchmarks.accuracy")
# The intervals whose pooled coverage is reported (the coverage goal's, issue 14).
INTERVALS = tuple(am.interval_name(c) for c in am.SCORED_INTERVALS)


def stretch_dir(output_dir: str, cut: float) -> str:
    """Where one cut's accuracy run goes: ``cut-0`` (the real test split), ``cut-0.15``, ..."""
    return os.path.join(output_dir, f"cut-{cut:g}")


def parse_cuts(text: str) -> list[float]:
    """The cuts of ``--cuts``: distinct, each 0 (the real test split) or in (0, 0.5).

    Raises:
      ValueError: Naming the value that is not a cut.
    """
    cuts = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        try:
            cut = float(part)
        except ValueError:
            raise ValueError(f"--cuts: '{part}' is not a number") from None
        if not (cut == 0 or 0 < cut < 0.5) or cut in cuts:
            raise ValueError(f"--cuts: {part} must be 0 or above 0 and below 0.5, each once")
        cuts.append(cut)
    if not cuts:
        raise ValueError("--cuts: give at least one cut")
    return cuts


def accuracy_argv(cut: float, output_dir: str, args: argparse.Namespace) -> list[str]:
    """The :mod:`benchmarks.accuracy` arguments of one cut's run, into the cut's directory."""
    argv = ["--output-dir", stretch_dir(output_dir, cut), "--max-origins", str(args.max_origins),
            f"--model-flags={args.model_flags}"]
    if args.datasets:
        argv += ["--datasets", args.datasets]
    if cut:
        argv += ["--backtest-cut", f"{cut:g}"]
    if args.keep:
        argv.append("--keep")
    return argv


def _prepared_cut(cut: float, output_dir: str, args: argparse.Namespace) -> tuple[str, list[str]]:
    """The cut's directory, made if missing, and its :func:`accuracy_argv`."""
    directory = stretch_dir(output_dir, cut)
    os.makedirs(directory, exist_ok=True)
    return directory, accuracy_argv(cut, output_dir, args)


def run_stretch(cut: float, output_dir: str, args: argparse.Namespace) -> int:
    """Runs :mod:`benchmarks.accuracy` for one cut in this process; its tables go to ``accuracy.txt`` in the
    cut's directory."""
    directory, argv = _prepared_cut(cut, output_dir, args)
    accuracy.progress(f"cut {cut:g}: benchmarks.accuracy {' '.join(argv)}")
    with open(os.path.join(directory, TABLES_FILE), "w") as tables, contextlib.redirect_stdout(tables):
        return accuracy.main(argv)


def run_stretches_in_parallel(cuts: list[float], output_dir: str, args: argparse.Namespace, jobs: int,
                              command: Sequence[str] = ACCURACY_COMMAND) -> dict[float, int]:
    """Runs each cut's benchmark as a child process, ``jobs`` at a time; returns each cut's exit code.

    Each child writes its tables to the cut's ``accuracy.txt`` and its progress to ``progress.log``
    beside it (the cuts' progress lines would interleave on one terminal); this prints a line as
    each cut starts and ends. The figures are those of :func:`run_stretch` (every pipeline is
    seeded). One run keeps about one core busy (Beam's DirectRunner and the baselines' fits are
    single-threaded): on 2 cores the three cuts of a 7-set run took 1,090 s at once, against
    1,366-1,490 s one after the other (README, *Three stretches pooled*).

    Args:
      cuts: The cuts to run.
      output_dir: Where each cut's directory goes (:func:`stretch_dir`).
      args: The parsed flags (:func:`accuracy_argv`).
      jobs: How many cuts run at once.
      command: The benchmark's command line, before its arguments.
    """

    def run(cut: float) -> int:
        directory, argv = _prepared_cut(cut, output_dir, args)
        log = os.path.join(directory, PROGRESS_FILE)
        accuracy.progress(f"cut {cut:g}: started, benchmarks.accuracy {' '.join(argv)} (progress: {log})")
        start = time.monotonic()
        with open(os.path.join(directory, TABLES_FILE), "w") as tables, open(log, "w") as progress_log:
            code = subprocess.run([*command, *argv], stdout=tables, stderr=progress_log, cwd=REPO,
                                  check=False).returncode
        accuracy.progress(f"cut {cut:g}: done in {time.monotonic() - start:.0f} s"
                          + (f", exit code {code} (see {log})" if code else ""))
        return code

    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool_:
        return dict(zip(cuts, pool_.map(run, cuts), strict=True))


def load_stretch(output_dir: str, cut: float) -> dict[str, Any]:
    """One cut's results (its ``accuracy.json``).

    Raises:
      FileNotFoundError: With a message naming the file, when the cut was not run there.
    """
    path = os.path.join(stretch_dir(output_dir, cut), accuracy.RESULTS_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no results of cut {cut:g} (run without --pool-only first)")
    with open(path) as f:
        return json.load(f)


def _scored(result: dict[str, Any], reference: str) -> am.Split:
    windows = result["scored_windows"]
    return (np.asarray(windows["mae"][accuracy.MODEL]), np.asarray(windows["mae"][reference]),
            np.asarray(windows["origins"]), int(windows["lags"]))


def _hits(result: dict[str, Any], interval: str) -> Optional[am.Split]:
    windows = (result.get("intervals") or {}).get("windows")
    if not windows or interval not in windows["hits"]:
        return None
    return np.asarray(windows["hits"][interval]), np.asarray(windows["origins"]), int(windows["lags"])


def _figure(band: Optional[am.Band], estimate: float) -> dict[str, Any]:
    if band is None:
        return {"estimate": estimate, "low": None, "high": None}
    return {"estimate": band.estimate, "low": band.low, "high": band.high, "origins": band.origins}


def pool(stretches: dict[float, dict[str, Any]],
         names: Optional[list[str]] = None) -> tuple[dict[str, dict[str, Any]], dict[str, list[float]]]:
    """Each data set's figures pooled over the stretches (the :mod:`benchmarks.accuracy` results by cut).

    Args:
      stretches: The results by cut.
      names: The data sets (default: every one a cut ran).

    Returns:
      ``{set: {"per_cut": {cut: model/MSTL}, "MSTL": figure, "AutoTheta": figure, "coverage": {"80":
      figure, "95": figure}}}``, a figure being ``{estimate, low, high}`` (no band: low and high None),
      for the sets every cut scored; and ``{set: [cuts where it failed or is missing]}`` for the others.
    """
    if not names:
        ran = {name for result in stretches.values() for name in (*result["datasets"], *result["failed"])}
        order = list(datasets_lib.DATASETS)
        names = sorted(ran, key=lambda name: (order.index(name) if name in order else len(order), name))
    pooled, left_out = {}, {}
    for name in names:
        missing = [cut for cut, result in stretches.items() if name not in result["datasets"]]
        if missing:
            left_out[name] = missing
            continue
        results = [result["datasets"][name] for result in stretches.values()]
        figures: dict[str, Any] = {"per_cut": {f"{cut:g}": result["datasets"][name]["model_mae_over"][accuracy.MSTL]
                                               for cut, result in stretches.items()}}
        for reference in (accuracy.MSTL, accuracy.AUTOTHETA):
            splits = [_scored(r, reference) for r in results]
            figures[reference] = _figure(am.ratio_band(splits), am.pooled_ratio(splits))
        figures["coverage"] = {}
        for interval in INTERVALS:
            splits = [_hits(r, interval) for r in results]
            if any(s is None for s in splits):
                continue
            figures["coverage"][interval] = _figure(am.fraction_band(splits), am.pooled_fraction(splits))
        pooled[name] = figures
    return pooled, left_out


def pooled_means(pooled: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """:func:`benchmarks.accuracy_metrics.set_means` of the pooled figures."""
    return am.set_means({name: p[accuracy.MSTL]["estimate"] for name, p in pooled.items()},
                        {name: {k: f["estimate"] for k, f in p["coverage"].items()} for name, p in pooled.items()
                         if len(p["coverage"]) == len(INTERVALS)})


def _cell(figure: Optional[dict[str, Any]]) -> str:
    if figure is None:
        return "n/a"
    if figure["low"] is None:
        return f"{figure['estimate']:.3f} (no band)"
    return f"{figure['estimate']:.3f} [{figure['low']:.3f}, {figure['high']:.3f}]"


def verdict(figure: Optional[dict[str, Any]], value: float, below: str, above: str) -> str:
    """``below`` / ``above`` where the band lies wholly below / above ``value``; "cannot tell" where it holds
    it; "-" without a band."""
    if figure is None or figure["low"] is None:
        return "-"
    return below if figure["high"] < value else above if figure["low"] > value else "cannot tell"


def print_pooled(pooled: dict[str, dict[str, Any]], cuts: list[float], left_out: dict[str, list[float]]) -> None:
    rows = []
    for name, p in pooled.items():
        mstl = p[accuracy.MSTL]
        rows.append([name, *(f"{p['per_cut'][f'{cut:g}']:.3f}" for cut in cuts), _cell(mstl),
                     verdict(mstl, 1.0, "beats MSTL", "loses to MSTL"), _cell(p[accuracy.AUTOTHETA]),
                     verdict(p[accuracy.AUTOTHETA], 1.0, "beats", "loses")])
    accuracy.print_table(
        "model MAE over MSTL's per stretch (cut 0: the real test split), and pooled over the stretches with its "
        "90% band", ["data set", *(f"cut {cut:g}" for cut in cuts), "pooled /MSTL", "verdict", "pooled /AutoTheta",
                     "verdict"], rows)
    rows = []
    for name, p in pooled.items():
        row = [name]
        for interval in INTERVALS:
            figure = p["coverage"].get(interval)
            row += [_cell(figure), verdict(figure, float(interval) / 100, "under-covers", "over-covers")]
        rows.append(row)
    accuracy.print_table("test coverage of the model's intervals, pooled over the stretches, with its 90% band",
                         ["data set", *(x for i in INTERVALS for x in (f"cov {i}", "verdict"))], rows)
    means = pooled_means(pooled)
    print(f"mean over {am.sets_phrase(means['sets'])}: pooled model/MSTL {means['model_mae_over_mstl']:.3f}; "
          f"|pooled coverage - nominal| of the {' and '.join(f'{i}%' for i in INTERVALS)} intervals "
          f"{means['coverage_error']:.4f}")
    for name, missing in left_out.items():
        print(f"left out: {name} (no result at cut {', '.join(f'{c:g}' for c in missing)})")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", required=True, help="where each cut's run goes (<dir>/cut-<F>)")
    parser.add_argument("--cuts", default=",".join(f"{c:g}" for c in DEFAULT_CUTS),
                        help="0 (the real test split) and backtest cuts (default 0,0.15,0.3)")
    parser.add_argument("--datasets", default="", help="comma-separated (default: all of benchmarks.accuracy's)")
    parser.add_argument("--model-flags", default="",
                        help="lstm-forecast run flags of a variant (as in benchmarks.accuracy)")
    parser.add_argument("--max-origins", type=int, default=40, help="scored test windows per series and stretch")
    parser.add_argument("--keep", action="store_true", help="keep each cut's runs (benchmarks.accuracy --keep)")
    parser.add_argument("--pool-only", action="store_true", help="pool the runs already in --output-dir")
    parser.add_argument("--jobs", type=int, default=1,
                        help="cuts run at once, each in a child process (one pipeline keeps about one core busy)")
    args = parser.parse_args(argv)
    try:
        cuts = parse_cuts(args.cuts)
    except ValueError as error:
        parser.error(str(error))
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1; got {args.jobs}")
    output_dir = os.path.abspath(args.output_dir)
    if not args.pool_only:
        if args.jobs > 1 and len(cuts) > 1:
            run_stretches_in_parallel(cuts, output_dir, args, args.jobs)
        else:
            for cut in cuts:
                run_stretch(cut, output_dir, args)
    try:
        stretches = {cut: load_stretch(output_dir, cut) for cut in cuts}
    except FileNotFoundError as error:
        print(error, file=sys.stderr)
        return 2
    pooled, left_out = pool(stretches, [n for n in args.datasets.split(",") if n] or None)
    print_pooled(pooled, cuts, left_out)
    flags = {f"{cut:g}": result.get("model_flags") for cut, result in stretches.items()}
    if len({json.dumps(f) for f in flags.values()}) > 1:
        print(f"warning: the cuts ran with different --model-flags: {flags}")
    print(json.dumps(accuracy.json_safe({
        "benchmark": "stretches", "cuts": cuts, "model_flags": flags, "datasets": pooled,
        "means": pooled_means(pooled), "left_out": {n: c for n, c in left_out.items()},
        "seconds": {f"{cut:g}": result.get("total_seconds") for cut, result in stretches.items()}}), sort_keys=True))
    return 1 if left_out else 0


if __name__ == "__main__":
    sys.exit(main())
