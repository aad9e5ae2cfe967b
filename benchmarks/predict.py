"""Prediction latency and throughput: the exported ``serving_default`` against ``model.predict()``.

One model (the default 2 x 64 stacked LSTM, L=52, H=4) is trained briefly on the transformed CO2
windows, then exported twice by the Trainer's export, with and without XLA. Each is called
in-process through TF2 (``tf.saved_model.load``) and through the TF1 session loader TF Serving
uses; the baseline is ``model.predict()`` of the same Keras model (on already-scaled windows, so
it does less work than the signatures, which scale and unscale in the graph). Reported: one-window
latency p50/p99, throughput at batch 1024, and for XLA the first call at a batch size not seen
before (XLA compiles once per input shape).

  tools/in-env python -m benchmarks.predict [--run-dir DIR]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default=os.path.join(tempfile.gettempdir(), "lstm_forecast_bench"))
    parser.add_argument("--repeats", type=int, default=500, help="timed one-window calls per candidate")
    args = parser.parse_args()

    transform_dir, examples_dir = benchmarks.transform_outputs(args.run_dir)
    tft_output = tft.TFTransformOutput(transform_dir)
    windows = benchmarks.bundled_config(args.run_dir).windows
    model_config = dataclasses.replace(config_lib.ModelConfig(), epochs=2)
    accessor = benchmarks.data_accessor(examples_dir)
    train_files, eval_files = (benchmarks.split_files(examples_dir, s) for s in ("train", "eval"))
    model = trainer_lib.train(train_files, eval_files, accessor, tft_output, windows.history, windows.horizon,
                              model_config)
    warmup = trainer_lib.warmup_inputs_from(eval_files, accessor, tft_output, False)
    export_root = tempfile.mkdtemp(prefix="predict_bench_")
    exports = {}
    for xla in (False, True):
        exports[xla] = os.path.join(export_root, "xla" if xla else "plain")
        trainer_lib.export_serving_model(model, tft_output, exports[xla],
                                         dataclasses.replace(model_config, serving_xla=xla), warmup)

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

    rows, result = [], {}

    def measure(name: str, call_one, call_big, repeats: int) -> None:
        lat = benchmarks.latencies_ms(call_one, repeats)
        batch_ms = benchmarks.median(benchmarks.latencies_ms(call_big, 20, warmup=3))
        entry = {"p50_ms": round(benchmarks.percentile(lat, 50), 3),
                 "p99_ms": round(benchmarks.percentile(lat, 99), 3),
                 "batch1024_windows_per_s": round(BATCH / batch_ms * 1000)}
        result[name] = entry
        rows.append([name, entry["p50_ms"], entry["p99_ms"], entry["batch1024_windows_per_s"]])

    measure("keras model.predict [baseline]", lambda: model.predict(one_scaled, verbose=0),
            lambda: model.predict(big_scaled, batch_size=BATCH, verbose=0), max(30, args.repeats // 10))
    first_call_ms = {}
    for xla in (False, True):
        label = "xla" if xla else "no_xla"
        signature = tf.saved_model.load(exports[xla]).signatures[contract.SIGNATURE_NAME]
        one_t = {k: tf.constant(v) for k, v in one.items()}
        big_t = {k: tf.constant(v) for k, v in big.items()}
        measure(f"serving_default TF2 in-process, {label}", lambda s=signature, x=one_t: s(**x),
                lambda s=signature, x=big_t: s(**x), args.repeats)
        loaded = repository.load_version(exports[xla], 1)
        sig = loaded.signatures[contract.SIGNATURE_NAME]
        fetch = sig.outputs[contract.OUTPUT_KEY].name
        run = lambda x, s=loaded.session, sig=sig, fetch=fetch: s.run(
            fetch, {sig.inputs[k].name: v for k, v in x.items()})
        measure(f"serving_default TF1 session, {label}", lambda r=run: r(one), lambda r=run: r(big), args.repeats)
        # A batch size the process has not run yet: XLA compiles here.
        start = time.perf_counter()
        run({k: v[:7] for k, v in warmup.items()})
        first_call_ms[label] = round((time.perf_counter() - start) * 1000, 1)

    goals = {"p50_ms_one_window": 1.0, "batch1024_windows_per_s": 12000}
    result.update({"goals": goals, "first_call_new_batch_size_ms": first_call_ms})
    rows.append(["first call at a new batch size (session), no_xla / xla", "", "",
                 f"{first_call_ms['no_xla']} ms / {first_call_ms['xla']} ms"])
    benchmarks.print_report(f"Prediction, one window and batch {BATCH} (goals: p50 <= 1 ms, >= 12,000 windows/s)",
                            ["what", "p50 ms", "p99 ms", "windows/s @1024"], rows, result)


if __name__ == "__main__":
    main()
