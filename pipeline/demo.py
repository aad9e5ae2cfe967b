"""The demo: run the pipeline, serve the pushed model, forecast the last test windows over gRPC.

The run's report (metrics against the naive forecasts, the skill, why the model was blessed) is
printed and written to ``OUTPUT/report/``, as ``lstm-forecast run`` does.

It starts ``lstm-forecast serve`` as a separate process, as a user would, waits until the model is
AVAILABLE (failing loudly if it never is), prints each forecast next to the actual value, and
stops the server.
"""

import contextlib
import os
import socket
import subprocess
import sys
import time
from typing import Iterator

import numpy as np

from components import windowing
from components.example_gen import executor as example_gen_executor
from components.example_gen import summary as summary_lib
from pipeline import console, local_data, local_runner
from pipeline import report as report_lib
from pipeline.config import PipelineConfig
from pipeline.errors import DemoError
from serving import client as client_lib
from serving import contract


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving_process(model_base_path: str, model_name: str, port: int, log_path: str) -> Iterator[subprocess.Popen]:
    """Runs ``lstm-forecast serve`` in a child process for the duration of the block."""
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "serve", "--model-base-path", model_base_path,
             "--model-name", model_name, "--port", str(port), "--host", "127.0.0.1",
             "--xla-cpu-compilation-enabled", "--enable-batching"],
            stdout=log, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def format_forecasts(origins: np.ndarray, target_times: np.ndarray, forecasts: np.ndarray,
                     actuals: np.ndarray) -> str:
    """A table of forecast against actual value, one line per window and horizon step."""
    lines = [f"{'forecast origin':<16} {'target date':<12} {'step':>4} {'forecast':>10} {'actual':>10} {'error':>8}"]
    for origin, times, forecast, actual in zip(origins, target_times, forecasts, actuals):
        for step, (t, f, a) in enumerate(zip(times, forecast, actual), start=1):
            target = np.datetime64(int(t), "s").astype("datetime64[D]")
            lines.append(f"{str(np.datetime64(int(origin), 's').astype('datetime64[D]')):<16} {str(target):<12} "
                         f"{step:>4} {f:>10.2f} {a:>10.2f} {f - a:>+8.2f}")
    return "\n".join(lines)


def run_demo(config: PipelineConfig, windows: int = 6, ready_timeout_s: float = 120.0) -> int:
    """Runs the demo end to end and prints what it does; returns the process exit code."""
    console.say(f"[1/3] running the pipeline on {config.data.path} into {config.output_dir}")
    result = local_runner.run(config, progress=console.stream())
    config = result.config
    console.say(f"      pipeline finished in {result.seconds:.1f} s")
    summary = example_gen_executor.read_summary(result.examples_uri)
    console.say("      " + summary_lib.format_summary(summary).replace("\n", "\n      "))
    report, report_dir = report_lib.make(config, result)
    console.say("      " + report_lib.format_report(report).replace("\n", "\n      "))
    console.say(f"      report: {os.path.join(report_dir, report_lib.HTML_FILE)}")
    console.say(f"      skill reached: {report.skill[windowing.EVAL]:.3f} on eval (the gate: below "
          f"{config.evaluation.max_skill:g}), {report.skill[windowing.TEST]:.3f} on test")
    if result.pushed_model is None:
        raise DemoError("the model was not blessed, so nothing was pushed to serve: " + "; ".join(report.reasons))
    with_test = [r["series_id"] for r in summary["per_series"] if r["windows"][windowing.TEST]]
    if not with_test:
        raise DemoError("the test split has no windows")
    test = local_data.read_split_windows(result.examples_uri, windowing.TEST, with_test[0])
    last = slice(max(len(test.histories) - windows, 0), None)

    port = free_port()
    log_path = os.path.join(config.output_dir, "server.log")
    console.say(f"[2/3] starting the gRPC server on 127.0.0.1:{port} (log: {log_path})")
    with serving_process(config.serving_model_dir, config.model_name, port, log_path) as process, \
            client_lib.ForecastClient(f"127.0.0.1:{port}", config.model_name) as client:
        started = time.monotonic()
        try:
            version = client.wait_until_ready(ready_timeout_s)
        except (TimeoutError, client_lib.ModelLoadError) as error:
            raise DemoError(f"{error} (server exit code: {process.poll()}; see {log_path})") from error
        console.say(f"      version {version} AVAILABLE after {time.monotonic() - started:.1f} s")
        console.say(f"[3/3] forecasting the last {len(test.histories[last])} test windows of series '{test.series_id}' "
          f"over gRPC")
        extra = {contract.ORIGIN_TIMESTAMP_INPUT_KEY: test.origin_times[last]} if config.windows.calendar_features \
            else {}
        extra.update({contract.future_input_key(c): v[last] for c, v in test.future_covariates.items()})
        forecasts = client.predict(test.histories[last], extra_inputs=extra)
    actuals = test.targets[last]
    console.say(format_forecasts(test.origin_times[last], test.target_times[last], forecasts, actuals))
    console.say(f"MAE over these windows: {np.mean(np.abs(forecasts - actuals)):.3f} "
          f"({forecasts.size} forecasts received over gRPC)")
    return 0
