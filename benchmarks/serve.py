"""Benchmark of serving: gRPC latency and throughput of the local server against the in-process call.

Starts ``lstm-forecast serve`` on a pushed model in its own process (with and without batching),
and measures from this process, in the same run:

* ``in-process``: the same signature run through the loader the server uses (a TF1 session,
  tensors by name), one window at a time and in batches: the floor for the server;
* one-window latency over loopback gRPC at concurrency 1 (p50, p99);
* windows/s at concurrency 1, 8 and 64, with requests of 1 and of 32 windows; concurrency is
  the number of calls in flight, kept up with gRPC futures.

Usage:
  make demo   # or any run that pushed a model
  tools/in-env python -m benchmarks.serve [--model-base-path runs/demo/serving_model/lstm_forecast]
"""

import argparse
import contextlib
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np

from pipeline.demo import free_port
from serving import client as client_lib
from serving import contract, repository
from serving import versions as versions_lib

MODEL_NAME = "lstm_forecast"


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


# The origin of every benchmark window (2001-12-29, a Saturday like the bundled data's weeks).
_ORIGIN = 1_009_584_000


def extra_inputs(n: int) -> dict[str, np.ndarray]:
    """The inputs beside the history of the default model (calendar features: the origins)."""
    return {contract.ORIGIN_TIMESTAMP_INPUT_KEY: np.full(n, _ORIGIN, np.int64)}


def in_process(model_dir: str, history: int, calls: int, batch: int) -> dict:
    """The served signature in this process, through the server's own loader."""
    loaded = repository.load_version(model_dir, 1, xla_cpu_compilation_enabled=True)
    signature = loaded.signatures[contract.SIGNATURE_NAME]
    fetch = signature.outputs[contract.OUTPUT_KEY].name
    rng = np.random.default_rng(0)

    def feed(n: int) -> dict:
        inputs = {contract.INPUT_KEY: rng.normal(340, 5, (n, history)).astype(np.float32), **extra_inputs(n)}
        return {signature.inputs[k].name: v for k, v in inputs.items() if k in signature.inputs}

    one, many = feed(1), feed(batch)
    for _ in range(20):
        loaded.session.run(fetch, one)
        loaded.session.run(fetch, many)
    latencies = []
    for _ in range(calls):
        started = time.perf_counter()
        loaded.session.run(fetch, one)
        latencies.append(time.perf_counter() - started)
    started = time.perf_counter()
    rounds = max(3, calls // 50)
    for _ in range(rounds):
        loaded.session.run(fetch, many)
    batched = rounds * batch / (time.perf_counter() - started)
    loaded.retire()
    return {**_percentiles(latencies), "one_window_per_s": 1 / np.median(latencies),
            f"batch_{batch}_windows_per_s": batched}


@contextlib.contextmanager
def serving(model_base_path: str, port: int, batching: bool):
    command = [sys.executable, "-m", "pipeline", "serve", "--model-base-path", model_base_path,
               "--model-name", MODEL_NAME, "--port", str(port), "--host", "127.0.0.1", "--xla-cpu-compilation-enabled"]
    if batching:
        command.append("--enable-batching")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with client_lib.ForecastClient(f"127.0.0.1:{port}", MODEL_NAME, timeout_s=30) as client:
            client.wait_until_ready(120)
            yield client
    finally:
        process.terminate()
        process.wait(timeout=30)


def latency(client: client_lib.ForecastClient, history: int, calls: int) -> dict:
    stub = client._predictions
    request = client_lib.build_predict_request(MODEL_NAME, np.full((1, history), 340, np.float32),
                                               extra_inputs=extra_inputs(1))
    for _ in range(50):
        stub.Predict(request, timeout=10)
    seconds = []
    for _ in range(calls):
        started = time.perf_counter()
        stub.Predict(request, timeout=10)
        seconds.append(time.perf_counter() - started)
    return _percentiles(seconds)


def throughput(client: client_lib.ForecastClient, history: int, concurrency: int, windows: int,
               seconds: float) -> float:
    """Windows/s with ``concurrency`` calls of ``windows`` windows always in flight."""
    stub = client._predictions
    request = client_lib.build_predict_request(MODEL_NAME, np.full((windows, history), 340, np.float32),
                                               extra_inputs=extra_inputs(windows))
    slots = threading.Semaphore(concurrency)
    lock = threading.Lock()
    done, errors = [0], []

    def finished(future):
        if future.exception() is not None:
            errors.append(future.exception())
        with lock:
            done[0] += 1
        slots.release()

    for _ in range(concurrency * 2):  # warm the connection and the batcher
        stub.Predict(request, timeout=30)
    started = time.perf_counter()
    deadline = started + seconds
    sent = 0
    while time.perf_counter() < deadline:
        slots.acquire()
        stub.Predict.future(request, timeout=30).add_done_callback(finished)
        sent += 1
    for _ in range(concurrency):
        slots.acquire()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} calls failed, first: {errors[0]}")
    return done[0] * windows / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-base-path", default=os.path.join("runs", "demo", "serving_model", MODEL_NAME))
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each throughput measurement")
    parser.add_argument("--calls", type=int, default=1000, help="calls of each latency measurement")
    args = parser.parse_args()
    versions = versions_lib.list_versions(args.model_base_path)
    if not versions:
        sys.exit(f"no model version under {args.model_base_path}: run 'make demo' (or lstm-forecast run) first")
    model_dir = versions_lib.version_path(args.model_base_path, versions[-1])
    loaded = repository.load_version(model_dir, versions[-1], xla_cpu_compilation_enabled=True)
    history = loaded.signatures[contract.SIGNATURE_NAME].inputs[contract.INPUT_KEY].tensor_shape.dim[-1].size
    loaded.retire()

    result = {"model": model_dir, "history": history, "cpus": os.cpu_count(),
              "in_process": in_process(model_dir, history, args.calls, batch=1024), "grpc": {}}
    for batching in (False, True):
        with serving(args.model_base_path, free_port(), batching) as client:
            row = {"latency_one_window": latency(client, history, args.calls)}
            for windows in (1, 32):
                for concurrency in (1, 8, 64):
                    row[f"c{concurrency}_w{windows}_windows_per_s"] = throughput(
                        client, history, concurrency, windows, args.seconds)
            result["grpc"]["batching" if batching else "no_batching"] = row

    base = result["in_process"]
    print(f"model {model_dir} (L={history}), {result['cpus']} CPUs")
    print(f"in-process (TF1 session, server's loader): one window p50 {base['p50_ms']:.3f} ms, "
          f"p99 {base['p99_ms']:.3f} ms; batch 1024: {base['batch_1024_windows_per_s']:,.0f} windows/s")
    print(f"{'server':<12} {'1-window p50 ms':>15} {'p99 ms':>7} | " + " ".join(
        f"{f'c{c} x{w} w/s':>12}" for w in (1, 32) for c in (1, 8, 64)) + " | c64x32 / in-process batch")
    for name, row in result["grpc"].items():
        rates = [row[f"c{c}_w{w}_windows_per_s"] for w in (1, 32) for c in (1, 8, 64)]
        ratio = row["c64_w32_windows_per_s"] / base["batch_1024_windows_per_s"]
        row["ratio_c64_w32_to_in_process_batch"] = ratio
        print(f"{name:<12} {row['latency_one_window']['p50_ms']:>15.3f} {row['latency_one_window']['p99_ms']:>7.3f} | "
              + " ".join(f"{r:>12,.0f}" for r in rates) + f" | {ratio:.2f}")
    print(json.dumps({"benchmark": "serve", **result}))


if __name__ == "__main__":
    main()
