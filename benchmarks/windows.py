"""Benchmark of example generation: windows/s, peak memory and wall time on Beam's DirectRunner.

Generates synthetic hourly data (100 series, rows spread over several CSV files by time, so every
series spans every file), runs the example generator's Beam graph (read, group per series, window,
encode, write gzipped TFRecords) on it, and measures, in the same run and on the same data:

* ``numpy``: a plain numpy sliding window over arrays already in memory (no parsing, no output),
  the floor of the windowing arithmetic;
* ``pandas+numpy``: what a notebook does: read all CSVs with pandas, group by series, and build
  every window in memory;
* ``beam``: the component's graph, as ``lstm-forecast windows`` runs it.

Each measurement runs in its own process so that its peak resident memory is its own.

Usage:
  tools/in-env python -m benchmarks.windows [--rows 100000 1000000 5000000] [--history 50]
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

SERIES = 100
FILES = 4


def generate(directory: str, rows: int, seed: int = 0) -> None:
    """Writes ``rows`` rows of ``SERIES`` hourly series as CSV files split by time."""
    import pandas as pd
    per_series = rows // SERIES
    rng = np.random.default_rng(seed)
    hours = pd.date_range("2020-01-01", periods=per_series, freq="h").strftime("%Y-%m-%dT%H:%M:%S").to_numpy()
    values = np.round(np.cumsum(rng.normal(size=(SERIES, per_series)), axis=1) + 100, 3)
    os.makedirs(directory, exist_ok=True)
    bounds = np.linspace(0, per_series, FILES + 1).astype(int)
    for f in range(FILES):
        part = slice(bounds[f], bounds[f + 1])
        n = bounds[f + 1] - bounds[f]
        frame = pd.DataFrame({
            "series": np.repeat([f"s{i:03d}" for i in range(SERIES)], n),
            "timestamp": np.tile(hours[part], SERIES),
            "value": values[:, part].ravel(),
        })
        frame.to_csv(os.path.join(directory, f"part-{f}.csv"), index=False)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_numpy(directory: str, history: int, horizon: int) -> dict:
    """Sliding windows over arrays already in memory: the arithmetic alone."""
    import pandas as pd
    frames = [pd.read_csv(os.path.join(directory, f)) for f in sorted(os.listdir(directory))]
    data = pd.concat(frames)
    arrays = [g["value"].to_numpy(np.float32) for _, g in data.groupby("series", sort=True)]
    started = time.perf_counter()
    windows = 0
    for values in arrays:
        view = np.lib.stride_tricks.sliding_window_view(values, history + horizon)
        histories, targets = view[:, :history].copy(), view[:, history:].copy()
        windows += len(histories) + 0 * len(targets)
    seconds = time.perf_counter() - started
    return {"windows": windows, "seconds": seconds, "peak_mb": _peak_mb()}


def run_pandas(directory: str, history: int, horizon: int) -> dict:
    """Read everything with pandas and build every window in memory, as a notebook does."""
    import pandas as pd
    started = time.perf_counter()
    data = pd.concat([pd.read_csv(os.path.join(directory, f)) for f in sorted(os.listdir(directory))])
    data["timestamp"] = pd.to_datetime(data["timestamp"], format="ISO8601", utc=True)
    all_windows = []
    for _, group in data.sort_values(["series", "timestamp"]).groupby("series", sort=True):
        view = np.lib.stride_tricks.sliding_window_view(group["value"].to_numpy(np.float32), history + horizon)
        all_windows.append((view[:, :history].copy(), view[:, history:].copy()))
    windows = sum(len(h) for h, _ in all_windows)
    return {"windows": windows, "seconds": time.perf_counter() - started, "peak_mb": _peak_mb()}


def run_beam(directory: str, history: int, horizon: int, mode: str, workers: int) -> dict:
    """The example generator's Beam graph on DirectRunner, as the component runs it."""
    import apache_beam as beam

    from components import windowing
    from components.example_gen import executor, reader
    from components.example_gen.options import WindowingOptions
    # No seasonal periods: the windows are L + H long, as the numpy baseline's.
    options = WindowingOptions.of(frequency="h", path=directory, series_id_column="series", history=history,
                                  horizon=horizon, seasonal_periods=(2,))
    output = tempfile.mkdtemp(prefix="windows-bench-out-")
    imported_mb = _peak_mb()
    try:
        started = time.perf_counter()
        files = reader.match_files(directory)
        split_uris = {s: os.path.join(output, f"Split-{s}") for s in windowing.SPLITS}
        args = ["--runner=DirectRunner", f"--direct_running_mode={mode}", f"--direct_num_workers={workers}"]
        with beam.Pipeline(argv=args) as pipeline:
            _ = pipeline | executor.WindowsToExamples(files, options, split_uris,
                                                      os.path.join(output, executor.SUMMARY_FILE))
        seconds = time.perf_counter() - started
        summary = executor.read_summary(output)
        written = sum(os.path.getsize(os.path.join(d, f)) for d in split_uris.values() for f in os.listdir(d))
    finally:
        shutil.rmtree(output, ignore_errors=True)
    windows = sum(summary["windows"].values()) + sum(summary["dropped_windows"].values())
    return {"windows": windows, "windows_written": sum(summary["windows"].values()), "seconds": seconds,
            "peak_mb": _peak_mb(), "peak_mb_after_imports": imported_mb, "output_mb": written / 2**20}


def _child(kind: str, directory: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--child", kind, "--data", directory, "--history", str(args.history),
               "--horizon", str(args.horizon), "--mode", args.mode, "--workers", str(args.workers)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000, 5_000_000])
    parser.add_argument("--history", type=int, default=50)
    parser.add_argument("--horizon", type=int, default=4)
    parser.add_argument("--mode", default="in_memory", choices=["in_memory", "multi_processing"])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--child", choices=["numpy", "pandas", "beam"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run = {"numpy": lambda: run_numpy(args.data, args.history, args.horizon),
               "pandas": lambda: run_pandas(args.data, args.history, args.horizon),
               "beam": lambda: run_beam(args.data, args.history, args.horizon, args.mode, args.workers)}
        print(json.dumps(run[args.child]()))
        return

    results = []
    for rows in args.rows:
        directory = tempfile.mkdtemp(prefix=f"windows-bench-{rows}-")
        try:
            generate(directory, rows)
            row = {"rows": rows, "series": SERIES, "history": args.history, "horizon": args.horizon,
                   "mode": args.mode, "workers": args.workers}
            for kind in ("numpy", "pandas", "beam"):
                row[kind] = _child(kind, directory, args)
            results.append(row)
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    print(f"{'rows':>9} {'windows':>9} | {'numpy w/s':>11} | {'pandas+numpy w/s':>16} {'peak MB':>8} | "
          f"{'beam w/s':>9} {'wall s':>7} {'peak MB':>8} {'(imports)':>9} | {'beam/numpy':>10} {'beam/pandas':>11}")
    for row in results:
        rate = {k: row[k]["windows"] / row[k]["seconds"] for k in ("numpy", "pandas", "beam")}
        row["windows_per_s"] = rate
        row["ratio_beam_to_numpy"] = rate["beam"] / rate["numpy"]
        row["ratio_beam_to_pandas"] = rate["beam"] / rate["pandas"]
        print(f"{row['rows']:>9} {row['beam']['windows']:>9} | {rate['numpy']:>11,.0f} | {rate['pandas']:>16,.0f} "
              f"{row['pandas']['peak_mb']:>8.0f} | {rate['beam']:>9,.0f} {row['beam']['seconds']:>7.1f} "
              f"{row['beam']['peak_mb']:>8.0f} {row['beam']['peak_mb_after_imports']:>9.0f} | "
              f"{row['ratio_beam_to_numpy']:>10.3f} {row['ratio_beam_to_pandas']:>11.2f}")
    print(json.dumps({"benchmark": "windows", "results": results}))


if __name__ == "__main__":
    main()
