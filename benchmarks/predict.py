"""Prediction latency and throughput: the export's LSTM graphs, portable and XLA, against ``model.predict()``.

One model (the default 2 x 64 stacked LSTM, L=52, H=4) is trained briefly on the transformed CO2
windows, then exported by the Trainer's export once per candidate:

* ``fused`` (the default): each LSTM one ``BlockLSTMV2`` op over the whole window;
* ``unrolled``: the Keras cell once per history step, no while loop (L is static);
* ``loop``: Keras' own graph, a while loop over the steps (the export before ``fused``);
* ``xla`` (opt-in, ``--serving-xla``): the loop compiled with XLA, batches padded to powers of two.

The first three are portable: stock TF Serving (``--xla_cpu_compilation_enabled`` off) runs them.
Each is called through the TF1 session loader TF Serving uses (what a server pays per call) and,
for the default and XLA, through TF2 (``tf.saved_model.load``). Baselines, same run: XLA (the
speed the portable default should keep) and ``model.predict()`` of the same Keras model (on
already-scaled windows, so it does less work than the signatures, which scale in the graph).
Reported: one-window latency p50/p99 and throughput at batch 1024 (the candidates called in turns,
so that other load on a shared CPU slows them alike), the first call of 300 windows after the
warmup file's requests (XLA compiles its 512 bucket there), and the largest difference of each
candidate's forecasts from the loop's.

With ``--ensemble-size K`` the model is an ensemble of K networks (``--ensemble-size`` of ``lstm-forecast
run``): K times the LSTM work per window. ``--lstm-units`` sets each LSTM layer's width, as the run's flag.

  tools/in-env python -m benchmarks.predict [--run-dir DIR] [--repeats N] [--ensemble-size K] [--lstm-units 32,32]
"""

import argparse
import dataclasses
import os
import tempfile
import time

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

import benchmarks
from components import trainer as trainer_lib
from pipeline import config as config_lib
from serving import contract, repository

BATCH = 1024
CANDIDATES = ("fused", "unrolled", "loop", "xla")
GOALS = {"p50_ms_one_window": 1.0, "batch1024_windows_per_s": 12000}


def _units(text: str) -> tuple[int, ...]:
    """Layer widths from ``"32,32"``; argparse reports a malformed value as a usage error."""
    try:
        units = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not units or min(units) < 1:
        raise argparse.ArgumentTypeError(f"each layer needs at least 1 unit, got {text!r}")
    return units


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default=os.path.join(tempfile.gettempdir(), "lstm_forecast_bench"))
    parser.add_argument("--repeats", type=int, default=500, help="timed one-window calls per candidate")
    parser.add_argument("--ensemble-size", type=int, default=1, help="networks averaged in the model (default 1)")
    parser.add_argument("--lstm-units", type=_units, default=config_lib.ModelConfig().lstm_units,
                        help="units of each stacked LSTM layer, e.g. 32,32 (default: the run's)")
    args = parser.parse_args()

    transform_dir, examples_dir = benchmarks.transform_outputs(args.run_dir)
    tft_output = tft.TFTransformOutput(transform_dir)
    windows = benchmarks.bundled_config(args.run_dir).windows
    model_config = dataclasses.replace(config_lib.ModelConfig(), epochs=2, ensemble_size=args.ensemble_size,
                                       lstm_units=args.lstm_units)
    accessor = benchmarks.data_accessor(examples_dir)
    train_files, eval_files = (benchmarks.split_files(examples_dir, s) for s in ("train", "eval"))
    model = trainer_lib.train(train_files, eval_files, accessor, tft_output, windows.history, windows.horizon,
                              model_config)
    warmup = trainer_lib.warmup_inputs_from(eval_files, accessor, tft_output, False)
    export_root = tempfile.mkdtemp(prefix="predict_bench_")
    exports = {}
    for name in CANDIDATES:
        exports[name] = os.path.join(export_root, name)
        xla = name == "xla"
        trainer_lib.export_serving_model(model, tft_output, exports[name],
                                         dataclasses.replace(model_config, serving_xla=xla), warmup,
                                         lstm_graph="loop" if xla else name)

    rng = np.random.default_rng(0)
    rows_big = rng.integers(0, len(warmup[contract.INPUT_KEY]), BATCH)
    one = {k: v[:1] for k, v in warmup.items()}
    big = {k: v[rows_big] for k, v in warmup.items()}
    keys = list(trainer_lib.model_inputs(tft_output))

    def scaled(inputs: dict) -> dict:
        raw = {trainer_lib.raw_feature(k): tf.constant(v.reshape(-1, 1) if v.ndim == 1 else v)
               for k, v in inputs.items()}
        transformed = tft_output.transform_raw_features(raw)
        return {k: transformed[k].numpy() for k in keys}

    one_scaled, big_scaled = scaled(one), scaled(big)
    result: dict = {}

    def summary(one_ms: list[float], big_ms: list[float]) -> dict:
        return {"p50_ms": round(benchmarks.percentile(one_ms, 50), 3),
                "p99_ms": round(benchmarks.percentile(one_ms, 99), 3),
                "batch1024_windows_per_s": round(BATCH / benchmarks.median(big_ms) * 1000)}

    result["keras model.predict"] = summary(
        benchmarks.latencies_ms(lambda: model.predict(one_scaled, verbose=0), max(30, args.repeats // 10)),
        benchmarks.latencies_ms(lambda: model.predict(big_scaled, batch_size=BATCH, verbose=0), 20, warmup=3))
    calls, first_call_ms, forecasts = {}, {}, {}
    for name in CANDIDATES:
        loaded = repository.load_version(exports[name], 1, xla_cpu_compilation_enabled=True)
        sig = loaded.signatures[contract.SIGNATURE_NAME]
        fetch = sig.outputs[contract.OUTPUT_KEY].name
        run = lambda x, s=loaded.session, sig=sig, fetch=fetch: s.run(  # noqa: E731
            fetch, {sig.inputs[k].name: v for k, v in x.items()})
        # The warmup file, as TF Serving replays it before the version is AVAILABLE.
        for request in repository.warmup_requests(exports[name]):
            run({k: tf.make_ndarray(v) for k, v in request.inputs.items()})
        forecasts[name] = run(big)
        # 300 windows: a batch size the warmup did not run (XLA pads it to 512 and compiles here).
        start = time.perf_counter()
        run({k: v[:300] for k, v in big.items()})
        first_call_ms[name] = round((time.perf_counter() - start) * 1000, 1)
        calls[f"{name}, TF1 session"] = (lambda r=run: r(one), lambda r=run: r(big))
        if name in (trainer_lib.DEFAULT_LSTM_GRAPH, "xla"):
            signature = tf.saved_model.load(exports[name]).signatures[contract.SIGNATURE_NAME]
            one_t = {k: tf.constant(v) for k, v in one.items()}
            big_t = {k: tf.constant(v) for k, v in big.items()}
            calls[f"{name}, TF2 in-process"] = (lambda s=signature, x=one_t: s(**x),
                                                lambda s=signature, x=big_t: s(**x))
    # Round-robin over the candidates, so that whatever else the CPU runs meanwhile slows all alike.
    one_ms, big_ms = benchmarks.interleaved_latencies_ms({k: c[0] for k, c in calls.items()}, args.repeats), \
        benchmarks.interleaved_latencies_ms({k: c[1] for k, c in calls.items()}, 20, warmup=3)
    for name in calls:
        result[name] = summary(one_ms[name], big_ms[name])

    xla = result["xla, TF1 session"]
    rows = []
    for name, entry in result.items():
        candidate = name.split(",")[0]
        entry["p50_vs_xla"] = round(entry["p50_ms"] / xla["p50_ms"], 2)
        entry["throughput_vs_xla"] = round(entry["batch1024_windows_per_s"] / xla["batch1024_windows_per_s"], 2)
        if candidate in forecasts:
            entry["max_abs_diff_vs_loop"] = float(np.abs(forecasts[candidate] - forecasts["loop"]).max())
            entry["first_call_new_batch_size_ms"] = first_call_ms[candidate]
        rows.append([name, entry["p50_ms"], entry["p99_ms"], entry["batch1024_windows_per_s"], entry["p50_vs_xla"],
                     entry["throughput_vs_xla"], entry.get("first_call_new_batch_size_ms", ""),
                     f"{entry['max_abs_diff_vs_loop']:.1e}" if "max_abs_diff_vs_loop" in entry else ""])
    default = result[f"{trainer_lib.DEFAULT_LSTM_GRAPH}, TF1 session"]
    result.update({"ensemble_size": args.ensemble_size, "lstm_units": list(args.lstm_units), "goals": GOALS,
                   "default": trainer_lib.DEFAULT_LSTM_GRAPH,
                   "default_meets_p50_goal": default["p50_ms"] <= GOALS["p50_ms_one_window"],
                   "default_meets_throughput_goal": default["batch1024_windows_per_s"]
                   >= GOALS["batch1024_windows_per_s"]})
    benchmarks.print_report(
        f"Prediction, one window and batch {BATCH}, ensemble size {args.ensemble_size}, "
        f"LSTM units {','.join(map(str, args.lstm_units))} "
        f"(default: {trainer_lib.DEFAULT_LSTM_GRAPH}; goals: p50 <= 1 ms, "
        f">= 12,000 windows/s)",
        ["what", "p50 ms", "p99 ms", "windows/s @1024", "p50 / xla", "windows/s / xla", "new batch size ms",
         "max |diff| vs loop"], rows, result)


if __name__ == "__main__":
    main()
