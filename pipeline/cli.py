"""The ``lstm-forecast`` command: run the pipeline, serve a model, ask it for forecasts, or all three.

Flags are parsed only here; each subcommand builds the settings objects and calls the library.
TensorFlow is imported inside the subcommands so that ``--help`` answers at once.
"""

import argparse
import dataclasses
import json
import os
import signal
import sys
import threading
from typing import Optional, Sequence

import numpy as np

from components import settings
from pipeline import config as config_lib


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in _names(text))


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in _names(text))


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default, unless its help already says it or there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "(default" in text or action.default in (None, "", [], (), argparse.SUPPRESS) or action.required:
            return text
        if isinstance(action.default, tuple):
            return f"{text} (default: {','.join(map(str, action.default))})"
        return super()._get_help_string(action)


# How a flag's text becomes a setting's value, by the kind of value.
_PARSERS = {"names": _names, "floats": _floats, "ints": _ints, "int": int, "float": float, "str": str}


def _add(parser: argparse.ArgumentParser, cls: type, name: str, kind: str = "str", **extra) -> None:
    """Adds the flag of setting ``name`` of ``cls`` with its declared help, choices and default."""
    flag, default = settings.flag_of(cls, name), settings.default_of(cls, name)
    if default is dataclasses.MISSING:
        extra.setdefault("required", True)
    if kind == "bool":
        parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=default,
                            help=settings.help_of(cls, name), **extra)
        return
    choices = settings.choices_of(cls, name)
    metavar = None if choices else flag[2:].upper().replace("-", "_")
    parser.add_argument(flag, dest=name, type=_PARSERS[kind], choices=choices, metavar=metavar,
                        default=None if default is dataclasses.MISSING else default,
                        help=settings.help_of(cls, name), **extra)


def _add_data_flags(parser: argparse.ArgumentParser) -> None:
    D, W, P = config_lib.DataConfig, config_lib.WindowConfig, config_lib.PipelineConfig  # noqa: N806
    _add(parser, D, "path")
    _add(parser, P, "output_dir")
    for name in ("timestamp_column", "target_column", "series_id_column", "frequency", "duplicates", "gap_policy"):
        _add(parser, D, name)
    _add(parser, D, "max_gap", "int")
    _add(parser, D, "covariate_columns", "names")
    _add(parser, D, "future_covariate_columns", "names")
    for name in ("history", "horizon", "stride", "split_gap"):
        _add(parser, W, name, "int")
    _add(parser, W, "seasonal_periods", "ints")
    _add(parser, W, "seasonal_lags", "bool")
    _add(parser, W, "split_fractions", "floats")
    _add(parser, W, "split_times", "names")
    _add(parser, W, "split_scope")
    _add(parser, W, "calendar_features", "bool")
    _add(parser, P, "beam_direct_running_mode")
    _add(parser, P, "beam_num_workers", "int")
    _add(parser, P, "enable_cache", "bool")
    _add(parser, P, "beam_preset")
    parser.add_argument(settings.flag_of(P, "beam_options"), dest="beam_options", action="append", default=[],
                        metavar="KEY=VALUE", help=settings.help_of(P, "beam_options"))


def _add_pipeline_flags(parser: argparse.ArgumentParser) -> None:
    _add_data_flags(parser)
    M, E, P = config_lib.ModelConfig, config_lib.EvaluationConfig, config_lib.PipelineConfig  # noqa: N806
    for name in ("scaling", "loss"):
        _add(parser, M, name)
    _add(parser, M, "lstm_units", "ints")
    _add(parser, M, "quantiles", "floats")
    for name in ("dropout", "recurrent_dropout", "learning_rate"):
        _add(parser, M, name, "float")
    for name in ("batch_size", "epochs", "early_stopping_patience", "seed", "tuner_trials"):
        _add(parser, M, name, "int")
    for name in ("serving_xla", "tune", "seasonal_base"):
        _add(parser, M, name, "bool")
    _add(parser, P, "model_name")
    for name in ("max_skill", "regression_tolerance", "coverage_tolerance"):
        _add(parser, E, name, "float")
    _add(parser, E, "report_series", "int")
    _add(parser, P, "keep_versions", "int")


def _data_path(path: str) -> str:
    # Remote paths (gs://, s3://) stay as given; local ones are made absolute for the components.
    return path if "://" in path else os.path.abspath(path)


def _values(args: argparse.Namespace, cls: type, **fixed) -> dict:
    """The fields of settings class ``cls`` that the flags set, with ``fixed`` ones."""
    return {**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}, **fixed}


def pipeline_config_from_flags(args: argparse.Namespace) -> config_lib.PipelineConfig:
    """The :class:`PipelineConfig` that the flags of ``run``, ``windows`` and ``demo`` describe (not yet resolved).

    Raises:
      ConfigError: A setting out of its range or choices, naming its flag.
    """
    data = config_lib.DataConfig(**_values(args, config_lib.DataConfig, path=_data_path(args.path)))
    windows = config_lib.WindowConfig(**_values(args, config_lib.WindowConfig,
                                                split_times=args.split_times or None))
    model = config_lib.ModelConfig(**_values(args, config_lib.ModelConfig))
    evaluation = config_lib.EvaluationConfig(**_values(args, config_lib.EvaluationConfig))
    run_fields = {f.name for f in dataclasses.fields(config_lib.PipelineConfig)} - {
        "data", "windows", "model", "evaluation", "output_dir", "pipeline_name"}
    run = {name: getattr(args, name) for name in run_fields if hasattr(args, name)}
    return config_lib.PipelineConfig(data=data, output_dir=_data_path(args.output_dir), windows=windows, model=model,
                                     evaluation=evaluation, **{**run, "beam_options": tuple(run["beam_options"])})


def _resolved_config(args: argparse.Namespace) -> config_lib.PipelineConfig:
    """The flags' settings, with what they leave to the data (history, seasonal periods) read from it."""
    config = config_lib.resolve_from_data(pipeline_config_from_flags(args))
    w = config.windows
    print(f"windows          history {w.history}, horizon {w.horizon}, seasonal periods "
          f"{', '.join(map(str, w.seasonal_periods)) or 'none'} (context {w.context})", flush=True)
    return config


def _print_windows_summary(examples_uri: str) -> None:
    from components.example_gen import executor, summary
    print(summary.format_summary(executor.read_summary(examples_uri)))
    print(f"summary JSON: {os.path.join(examples_uri, executor.SUMMARY_FILE)}")


def _cmd_windows(args: argparse.Namespace) -> int:
    from pipeline import local_runner
    result = local_runner.run(_resolved_config(args), windows_only=True, progress=sys.stdout)
    print(f"windows written in {result.seconds:.1f} s to {result.examples_uri}")
    _print_windows_summary(result.examples_uri)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from pipeline import local_runner
    from pipeline import report as report_lib
    config = _resolved_config(args)
    result = local_runner.run(config, progress=sys.stdout)
    _print_windows_summary(result.examples_uri)
    print(local_runner.format_component_runs(result.components))
    print(f"pipeline finished in {result.seconds:.1f} s; examples: {result.examples_uri}\n")
    report, report_dir = report_lib.make(config, result)
    print(report_lib.format_report(report))
    print(f"report           {os.path.join(report_dir, report_lib.HTML_FILE)}")
    # A run whose model is not blessed did its job, but a script chaining on it must know.
    return 0 if result.pushed_model else 2


def _cmd_serve(args: argparse.Namespace) -> int:
    from serving import dataplane, grpc_server, repository, rest
    batching = None
    if args.enable_batching:
        batching = dataplane.BatchingOptions(max_batch_size=args.max_batch_size,
                                             batch_timeout_s=args.batch_timeout_micros / 1e6,
                                             num_batch_threads=args.num_batch_threads)
    model = repository.ModelRepository(args.model_name, os.path.abspath(args.model_base_path),
                                       run_warmup=dataplane.run_request, poll_seconds=args.poll_seconds,
                                       num_versions=args.num_versions,
                                       xla_cpu_compilation_enabled=args.xla_cpu_compilation_enabled)
    plane = dataplane.DataPlane(model, batching=batching)
    server, port = grpc_server.start_server(plane, args.port, host=args.host)
    print(f"serving model '{args.model_name}' from {model.model_base_path} on {args.host}:{port}", flush=True)
    rest_server = None
    if args.rest_port is not None:
        rest_server, rest_port = rest.start_rest_server(plane, args.rest_port, host=args.host)
        print(f"REST API on {args.host}:{rest_port} (/v1/models/{args.model_name})", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=2).wait()
    if rest_server is not None:
        rest_server.shutdown()
    plane.stop()
    return 0


def _read_windows(path: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Windows ``[N, C]`` and further inputs by name from a JSON or CSV file (see ``predict --help``)."""
    with open(path) as f:
        text = f.read()
    extra = {}
    if path.endswith(".json"):
        data = json.loads(text)
        if isinstance(data, dict):
            extra = {k: np.asarray(v) for k, v in data.items() if k != "history"}
            data = data.get("history", [])
        windows = np.asarray(data, dtype=np.float32)
    else:
        windows = np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2)
    if windows.ndim == 1:
        windows = windows[None, :]
    return windows, extra


def _series_window(args: argparse.Namespace, context: int):
    """``--series`` on its grid, and its last ``context`` points."""
    from components.example_gen import reader
    from components.example_gen.options import DataConfig
    from pipeline import local_data
    data = DataConfig(path=args.series, timestamp_column=args.timestamp_column, target_column=args.target_column,
                      series_id_column=args.series_id_column, frequency=args.frequency)
    return local_data.latest_window(reader.match_files(_data_path(args.series)), data, context, args.series_id)


def _interval_json(result) -> dict:
    """The quantiles of a :class:`serving.client.QuantileForecast` as ``predict --json`` prints them."""
    if result is None:
        return {}
    return {"quantile_levels": result.levels.tolist(), "quantiles": result.quantiles.tolist(),
            "intervals": {f"{100 * c:.10g}": dict(zip(("lower", "upper"), (b.tolist() for b in result.interval(c))))
                          for c in result.intervals()}}


def _interval_cells(result, row: int, step: int) -> str:
    """``[lo, hi]`` of each interval, widest last, for one window and step; empty for a point model."""
    if result is None:
        return ""
    return "".join(f"  [{lo[row, step]:>10.3f}, {hi[row, step]:>10.3f}]"
                   for lo, hi in (result.interval(c) for c in result.intervals()))


def _interval_header(result) -> str:
    if result is None:
        return ""
    return "".join(f"  {f'{100 * c:.10g}% interval':^26}" for c in result.intervals())


def _cmd_predict(args: argparse.Namespace) -> int:
    from components.example_gen import frequency
    from serving import client as client_lib
    from serving import contract
    with client_lib.ForecastClient(args.server, args.model_name, version=args.version,
                                   timeout_s=args.timeout) as client:
        signature = client.metadata()[contract.SIGNATURE_NAME]
        inputs = signature["inputs"]
        with_quantiles = contract.QUANTILES_OUTPUT_KEY in signature["outputs"]

        def forecast(windows: np.ndarray, extra: dict):
            """The point forecasts, and the quantiles when the model has them (else None)."""
            if not with_quantiles:
                return client.predict(windows, extra_inputs=extra), None
            result = client.predict_quantiles(windows, extra_inputs=extra)
            return result.forecast, result
        if args.series:
            future = sorted(k for k in inputs if k.startswith(contract.FUTURE_INPUT_PREFIX))
            if future:
                raise client_lib.ForecastError(
                    f"the model needs the future values of {', '.join(future)}; give windows with --input")
            context = inputs[contract.INPUT_KEY][-1]
            grid, values = _series_window(args, context)
            origin = int(grid.times[-1])
            extra = {contract.ORIGIN_TIMESTAMP_INPUT_KEY: [origin]} if contract.ORIGIN_TIMESTAMP_INPUT_KEY in inputs \
                else {}
            forecasts, result = forecast(values[None, :], extra)
            times = frequency.following(origin, grid.frequency, forecasts.shape[1])
            if args.json:
                intervals = _interval_json(result)
                for key in ("quantiles",):
                    if key in intervals:
                        intervals[key] = intervals[key][0]
                for bounds in intervals.get("intervals", {}).values():
                    bounds.update({k: v[0] for k, v in bounds.items()})
                print(json.dumps({"series_id": grid.series_id, "origin_timestamp": origin,
                                  "target_timestamps": times.tolist(), "forecast": forecasts[0].tolist(),
                                  **intervals}))
            else:
                stamp = lambda t: str(np.datetime64(int(t), "s")).replace("T00:00:00", "")  # noqa: E731
                print(f"series '{grid.series_id}', forecast origin {stamp(origin)} "
                      f"(from its last {context} points, frequency {grid.frequency})")
                print(f"{'step':>4}  {'time':<19}  {'forecast':>10}{_interval_header(result)}")
                for step, (t, v) in enumerate(zip(times, forecasts[0])):
                    print(f"{step + 1:>4}  {stamp(t):<19}  {v:>10.3f}{_interval_cells(result, 0, step)}")
            return 0
        windows, extra = _read_windows(args.input)
        missing = sorted(set(inputs) - {contract.INPUT_KEY} - set(extra))
        if missing:
            raise client_lib.ForecastError(
                f"{args.input}: the model also needs {', '.join(missing)} (give them as JSON keys beside "
                f"\"history\"; {contract.ORIGIN_TIMESTAMP_INPUT_KEY}: epoch seconds of each window's last point)")
        forecasts, result = forecast(windows, extra)
    if args.json:
        print(json.dumps({"forecast": forecasts.tolist(), **_interval_json(result)}))
    elif result is None:
        for i, row in enumerate(forecasts):
            print(f"window {i}: " + "  ".join(f"{v:.3f}" for v in row))
    else:
        for i, row in enumerate(forecasts):
            print(f"window {i}:")
            print(f"{'step':>6}  {'forecast':>10}{_interval_header(result)}")
            for step, v in enumerate(row):
                print(f"{step + 1:>6}  {v:>10.3f}{_interval_cells(result, i, step)}")
    return 0


def _cmd_compile_kubeflow(args: argparse.Namespace) -> int:
    from pipeline import kubeflow_runner
    spec = kubeflow_runner.compile_pipeline(_resolved_config(args), args.image, args.pipeline_json)
    tasks = spec["pipelineSpec"]["root"]["dag"]["tasks"]
    print(f"wrote {args.pipeline_json}: {len(tasks)} components ({', '.join(tasks)}) in image {args.image}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from pipeline import demo
    return demo.run_demo(_resolved_config(args), windows=args.windows,
                         ready_timeout_s=args.ready_timeout)


def serve_batching_defaults() -> dict[str, int]:
    # The defaults of serving.dataplane.BatchingOptions, without importing TensorFlow for --help.
    return {"max_batch_size": 256, "batch_timeout_micros": 0, "num_batch_threads": 2}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lstm-forecast", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    # Every --help shows every default.
    formatter = {"formatter_class": _DefaultsFormatter}

    run = commands.add_parser("run", **formatter, help="run the TFX pipeline and push a blessed model")
    _add_pipeline_flags(run)
    run.set_defaults(func=_cmd_run)

    windows = commands.add_parser("windows", **formatter,
                                  help="check the data and write the windows only; print a summary")
    _add_data_flags(windows)
    windows.set_defaults(func=_cmd_windows)

    serve = commands.add_parser("serve", **formatter, help="serve pushed versions over TF Serving's gRPC API")
    serve.add_argument("--model-base-path", required=True, help="directory of numbered versions")
    serve.add_argument("--model-name", default=config_lib.DEFAULT_MODEL_NAME)
    serve.add_argument("--port", type=int, default=8500)
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--rest-port", type=int, default=None, help="also serve TF Serving's REST API (8501 in TF "
                       "Serving's images); off unless given")
    serve.add_argument("--poll-seconds", type=float, default=1.0, help="how often to look for new versions")
    serve.add_argument("--xla-cpu-compilation-enabled", action="store_true",
                       help="run XLA-compiled signatures (the default export); as in TF Serving, off unless given")
    serve.add_argument("--num-versions", type=int, default=1,
                       help="newest versions kept loaded, each addressable by number (TF Serving's latest policy)")
    batching = serve_batching_defaults()
    serve.add_argument("--enable-batching", action="store_true", help="batch concurrent requests (as TF Serving)")
    serve.add_argument("--max-batch-size", type=int, default=batching["max_batch_size"])
    serve.add_argument("--batch-timeout-micros", type=int, default=batching["batch_timeout_micros"],
                       help="how long a batch waits for more requests; 0 runs what is queued at once")
    serve.add_argument("--num-batch-threads", type=int, default=batching["num_batch_threads"])
    serve.set_defaults(func=_cmd_serve)

    predict = commands.add_parser("predict", **formatter,
                                  help="forecasts over gRPC for windows in a file, or for a series")
    predict.add_argument("--server", default="localhost:8500", help="host:port")
    predict.add_argument("--model-name", default=config_lib.DEFAULT_MODEL_NAME)
    predict.add_argument("--version", type=int, default=None)
    source = predict.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", help="windows: JSON ([[...], ...], or {\"history\": [[...]], and any further "
                        "input: \"origin_timestamp\": [...], \"future_<column>\": [[...]]}) or CSV, one window a row")
    source.add_argument("--series", help="a series file (CSV/Parquet): forecast from its last L points")
    defaults_d = config_lib.DataConfig(path="")
    predict.add_argument("--timestamp-column", default=defaults_d.timestamp_column, help="with --series")
    predict.add_argument("--target-column", default=defaults_d.target_column, help="with --series")
    predict.add_argument("--series-id-column", default=None, help="with --series, when it holds several")
    predict.add_argument("--series-id", default=None, help="with --series-id-column: which series")
    predict.add_argument("--frequency", default=None, help="with --series: pandas offset alias (default: inferred)")
    predict.add_argument("--timeout", type=float, default=10.0, help="deadline of each call, seconds")
    predict.add_argument("--json", action="store_true", help="print JSON")
    predict.set_defaults(func=_cmd_predict)

    kubeflow = commands.add_parser("compile-kubeflow", **formatter,
                                   help="compile the pipeline for Kubeflow Pipelines / Vertex AI (offline)")
    _add_pipeline_flags(kubeflow)
    kubeflow.add_argument("--image", required=True, help="container image of the components (Dockerfile: pipeline)")
    kubeflow.add_argument("--pipeline-json", required=True, help="the pipeline spec to write")
    kubeflow.set_defaults(func=_cmd_compile_kubeflow)

    demo = commands.add_parser("demo", **formatter, help="run the pipeline, serve the model, forecast over gRPC")
    _add_pipeline_flags(demo)
    demo.add_argument("--windows", type=int, default=6, help="last test windows to forecast")
    demo.add_argument("--ready-timeout", type=float, default=120.0, help="seconds to wait for the server")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except _known_errors() as error:
        # Bad data, an unreachable server, a model that was not blessed: one clear line, no trace.
        print(f"lstm-forecast {args.command}: error: {error}", file=sys.stderr)
        return 1


def _known_errors() -> tuple[type[Exception], ...]:
    from components.example_gen.columns import DataError
    from pipeline.errors import DemoError
    from serving.client import ForecastError
    return (DataError, config_lib.ConfigError, DemoError, ForecastError, TimeoutError, FileNotFoundError)

if __name__ == "__main__":
    sys.exit(main())
