"""Batch forecasting throughput: the forecast job against calling the SavedModel directly, same run.

The model is the bundled run's pushed model (weekly CO2, the defaults: L=52, H=4, quantiles; the
default export runs each LSTM as one fused ``BlockLSTMV2`` op, no XLA; the report says which export
it measured), from :func:`benchmarks.transform_outputs`' pipeline run. The data: ``--series``
synthetic weekly series (a seasonal wave, a level and noise per series), ``--points`` points each,
in one Parquet file (and a CSV file, timed too). Measured, series per second:

* the forecast job (``pipeline.forecast.run_forecast``: read the file in chunks, prepare each
  chunk's complete series in bulk as it is read, call the model in blocks of 1024, write the
  forecasts in parts, then into one file) in this process, on the DirectRunner,
  Parquet input and CSV input, CSV output; and its rate past its fixed costs (Beam's set-up,
  loading the model and warming it up: about 0.3 s), from the difference between a job on
  all the series and one on a hundredth of them (each the best of three runs, interleaved);
  and the CPU seconds this process spent in each (the least of three), beside the baseline's: on
  a shared machine a figure that other jobs sway less than the wall clock's;
* ``serving_default`` called in batches of 1024 on windows cut beforehand (``benchmarks/predict.py``'s
  way): the upper bound the goal is relative to (goal: the job >= 50% of it);
* a plain Python loop calling ``serving_default`` once per series, on the same windows.

Peak RSS: of a separate process running the forecast command at a quarter, all and four times
the series (flat memory: the peak should not grow with the series; one Parquet file whose rows
keep each series together, which the job forecasts as it reads it).

  tools/in-env python -m benchmarks.forecast [--run-dir DIR] [--series 10000]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd
import tensorflow as tf

import benchmarks
from pipeline import forecast as forecast_lib
from serving import contract

BATCH = 1024
GOAL = 0.5
REPEATS = 3


def synthetic_series(series: int, points: int, seed: int = 0) -> pd.DataFrame:
    """``series`` weekly series of ``points`` points each, ending on the same Saturday."""
    rng = np.random.default_rng(seed)
    times = pd.date_range(end="2025-12-27", periods=points, freq="W-SAT")
    phase = 2 * np.pi * np.arange(points) / 52
    level = rng.uniform(300, 420, series)[:, None]
    values = level + 3 * np.sin(phase)[None, :] + rng.normal(0, 0.3, (series, points))
    return pd.DataFrame({"series": np.repeat([f"s{i:05d}" for i in range(series)], points),
                         "timestamp": np.tile(times.strftime("%Y-%m-%d"), series),
                         "value": values.reshape(-1)})


def export_kind(model_dir: str) -> str:
    """``xla`` for a SavedModel whose model is compiled with XLA (``--serving-xla``), else ``fused``."""
    with tf.io.gfile.GFile(os.path.join(model_dir, "saved_model.pb"), "rb") as f:
        return "xla" if b"_XlaMustCompile" in f.read() else "fused"


def _peak_rss_mb(argv: list[str]) -> float:
    """The peak RSS (MB) of a fresh process running ``lstm-forecast ARGV`` (which must succeed).

    Read from the process' own ``VmHWM``: ``ru_maxrss`` survives ``exec``, so a child forked from
    this process would report this process' size (the whole data set) whatever the command used.
    """
    code = ("import sys; from pipeline import cli; code = cli.main(sys.argv[1:]); "
            "print(next(line for line in open('/proc/self/status') if line.startswith('VmHWM:')).split()[1]); "
            "sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code, *argv], check=True, capture_output=True, text=True)
    return int(done.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default=os.path.join(tempfile.gettempdir(), "lstm_forecast_bench"))
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--points", type=int, default=60, help="points per series (at least the context C)")
    parser.add_argument("--loop-series", type=int, default=2000, help="series timed in the plain loop")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="forecast_bench_")
    log_path = os.path.join(work, "library.log")
    print(f"library output of this process: {log_path}", file=sys.stderr)
    # The plain loop's one-row calls alone make TensorFlow print a warning each.
    with benchmarks.library_output_to(log_path):
        measure(args, work)


def measure(args: argparse.Namespace, work: str) -> None:
    """Times the baseline and the jobs on synthetic series written under ``work``; prints the table and JSON."""
    benchmarks.transform_outputs(args.run_dir)
    model_dir = forecast_lib.model_version_dir(benchmarks.bundled_config(args.run_dir).serving_model_dir)
    description = forecast_lib.read_description(model_dir)
    context, horizon = description["windows"]["context"], description["windows"]["horizon"]
    frame = synthetic_series(args.series, max(args.points, context))
    parquet, csv = os.path.join(work, "series.parquet"), os.path.join(work, "series.csv")
    frame.to_parquet(parquet, index=False)
    frame.to_csv(csv, index=False)
    quarter = os.path.join(work, "quarter.parquet")
    frame[frame["series"] < f"s{args.series // 4:05d}"].to_parquet(quarter, index=False)
    # Four times the series, for the memory only; its ids go on from the others', in the same order.
    four = os.path.join(work, "four.parquet")
    pd.concat([synthetic_series(args.series, max(args.points, context), seed=s).assign(
        series=lambda f, s=s: f["series"].str.replace("s", f"s{s}_", n=1)) for s in range(4)]).to_parquet(
        four, index=False)
    small, small_series = os.path.join(work, "small.parquet"), max(1, args.series // 100)
    frame[frame["series"] < f"s{small_series:05d}"].to_parquet(small, index=False)

    # The windows the job cuts, cut here with numpy: the last C points of each series.
    values = frame["value"].to_numpy(np.float32).reshape(args.series, -1)
    windows = values[:, -context:]
    origin = int(pd.Timestamp(frame["timestamp"].iloc[-1], tz="UTC").timestamp())
    inputs = {contract.INPUT_KEY: windows}
    if description["windows"].get("calendar_features", True):
        inputs[contract.ORIGIN_TIMESTAMP_INPUT_KEY] = np.full(args.series, origin, np.int64)
    signature = tf.saved_model.load(model_dir).signatures[contract.SIGNATURE_NAME]

    def call(rows: slice) -> np.ndarray:
        return signature(**{k: tf.constant(v[rows]) for k, v in inputs.items()})[contract.OUTPUT_KEY].numpy()

    for size in (1, BATCH, args.series % BATCH or BATCH):
        call(slice(0, size))  # the first calls set the graph up (an XLA export compiles each size)
    # The best of REPEATS runs of each timing: the CPU may be shared.
    batched_s, batched_cpu = [], []
    for _ in range(REPEATS):
        start, cpu = time.perf_counter(), time.process_time()
        batched = np.concatenate([call(slice(i, i + BATCH)) for i in range(0, args.series, BATCH)])
        batched_s.append(time.perf_counter() - start)
        batched_cpu.append(time.process_time() - cpu)
    batched_rate = args.series / min(batched_s)
    start = time.perf_counter()
    for i in range(args.loop_series):
        call(slice(i, i + 1))
    loop_rate = args.loop_series / (time.perf_counter() - start)

    rows, result = [], {"series": args.series, "context": context, "horizon": horizon, "export": export_kind(model_dir)}
    rows.append([f"serving_default, batches of {BATCH} [baseline]", round(batched_rate), "1.00"])
    rows.append(["serving_default, plain loop, 1 series a call", round(loop_rate), f"{loop_rate / batched_rate:.2f}"])
    result.update(batched_series_per_s=round(batched_rate), loop_series_per_s=round(loop_rate))

    def job(path: str, name: str) -> tuple[float, float]:
        """Seconds and CPU seconds of the forecast job on ``path``, its forecasts checked against the batched calls'."""
        output = os.path.join(work, f"forecasts_{name}.csv")
        start, cpu = time.perf_counter(), time.process_time()
        done = forecast_lib.run_forecast(path, output, model_base_path=os.path.dirname(model_dir),
                                         overrides={"series_id_column": "series"})
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        written = pd.read_csv(output)["forecast"].to_numpy().reshape(-1, horizon)
        np.testing.assert_allclose(written, batched[:len(written)], rtol=1e-4, atol=1e-3)
        assert done.summary["forecast"] == len(written), done.summary
        return seconds, cpu

    # Interleaved, so that a busy spell of a shared CPU does not fall on one kind only. The job on
    # a hundredth of the series is nearly all fixed costs (Beam's set-up, loading the SavedModel,
    # its first call); the difference from the job on all of them is the per-series work.
    jobs = {"parquet": (parquet, args.series), "csv": (csv, args.series), "small": (small, small_series)}
    timings = {name: [job(path, name) for _ in range(REPEATS)] for name, (path, _) in jobs.items()}
    seconds = {name: min(wall for wall, _ in runs) for name, runs in timings.items()}
    cpu_s = {name: min(cpu for _, cpu in runs) for name, runs in timings.items()}
    for name in ("parquet", "csv"):
        rate = args.series / seconds[name]
        rows.append([f"forecast job, DirectRunner, {name} input", round(rate), f"{rate / batched_rate:.2f}"])
        result[f"job_{name}_series_per_s"] = round(rate)
        result[f"job_{name}_ratio"] = round(rate / batched_rate, 3)
    marginal = (args.series - small_series) / (seconds["parquet"] - seconds["small"])
    fixed = seconds["parquet"] - args.series / marginal
    rows.append(["forecast job, parquet, per series past its fixed costs", round(marginal),
                 f"{marginal / batched_rate:.2f}"])
    rows.append(["forecast job, its fixed costs (s)", f"{fixed:.2f}", ""])
    rows.append(["CPU seconds of this process: baseline / parquet job / csv job", "",
                 f"{min(batched_cpu):.2f} / {cpu_s['parquet']:.2f} / {cpu_s['csv']:.2f}"])
    result.update(batched_cpu_s=round(min(batched_cpu), 3), job_parquet_cpu_s=round(cpu_s["parquet"], 3),
                  job_csv_cpu_s=round(cpu_s["csv"], 3))
    result.update(job_marginal_series_per_s=round(marginal), job_marginal_ratio=round(marginal / batched_rate, 3),
                  job_fixed_s=round(fixed, 3))

    command = ["forecast", "--model-base-path", os.path.dirname(model_dir), "--series-id-column", "series", "--quiet"]
    rss_quarter = _peak_rss_mb(command + ["--data", quarter, "--output", os.path.join(work, "q.csv")])
    rss_all = _peak_rss_mb(command + ["--data", parquet, "--output", os.path.join(work, "a.csv")])
    rss_four = _peak_rss_mb(command + ["--data", four, "--output", os.path.join(work, "f.csv")])
    rows.append([f"peak RSS of the command, {args.series // 4} / {args.series} / {4 * args.series} series (MB)", "",
                 f"{rss_quarter:.0f} / {rss_all:.0f} / {rss_four:.0f}"])
    result.update(peak_rss_mb_quarter=round(rss_quarter), peak_rss_mb_all=round(rss_all),
                  peak_rss_mb_four_times=round(rss_four),
                  goal_ratio=GOAL, meets_goal=result["job_parquet_ratio"] >= GOAL,
                  marginal_meets_goal=result["job_marginal_ratio"] >= GOAL)
    benchmarks.print_report(f"Forecasting {args.series} series (C={context}, H={horizon}, {result['export']} "
                            f"export; goal: job >= "
                            f"{GOAL:.0%} of batched)", ["what", "series/s", "ratio"], rows, result)


if __name__ == "__main__":
    main()
