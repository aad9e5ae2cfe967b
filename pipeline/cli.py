"""The ``lstm-forecast`` command: run the pipeline, serve a model, ask it for forecasts, or all three.

Flags are parsed only here; each subcommand builds the settings objects and calls the library.
TensorFlow is imported inside the subcommands so that ``--help`` answers at once.
"""

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import re
import signal
import sys
import threading
import traceback
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from components import settings
from pipeline import config as config_lib
from pipeline import console

if TYPE_CHECKING:
    from serving.dataplane import DataPlane


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
    for name in ("timestamp_column", "target_column", "series_id_column", "frequency", "duplicates", "gap_policy",
                 "business_hours", "business_days"):
        _add(parser, D, name)
    _add(parser, D, "max_gap", "int")
    _add(parser, D, "covariate_columns", "names")
    _add(parser, D, "future_covariate_columns", "names")
    for name in ("history", "horizon", "stride", "split_gap"):
        _add(parser, W, name, "int")
    _add(parser, W, "seasonal_periods", "ints")
    _add(parser, W, "seasonal_lags", "bool")
    _add(parser, W, "seasonal_cycles", "int")
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
    for name in ("scaling", "loss", "interval_method", "base_mix_fit", "base_mix_weights", "calendar_index"):
        _add(parser, M, name)
    _add(parser, M, "lstm_units", "ints")
    _add(parser, M, "quantiles", "floats")
    for name in ("dropout", "recurrent_dropout", "learning_rate", "weight_decay"):
        _add(parser, M, name, "float")
    for name in ("batch_size", "epochs", "early_stopping_patience", "seed", "tuner_trials", "series_embedding_dim",
                 "ensemble_size", "calibration_folds"):
        _add(parser, M, name, "int")
    for name in ("serving_xla", "tune", "seasonal_base", "seasonal_base_mix", "smoothing_bases", "refit"):
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


def _resolved_config(args: argparse.Namespace, local: bool = True) -> config_lib.PipelineConfig:
    """The flags' settings, with what they leave to the data (history, seasonal periods) read from it.

    Args:
      args: The parsed flags.
      local: The command runs the pipeline here, so its output must be a local directory; once the
        settings are checked, the libraries' log (if the command keeps one) moves into it.

    Raises:
      ConfigError: A bad setting, or a remote output for a local run.
      DataError: The data cannot be read.
    """
    unresolved = pipeline_config_from_flags(args)
    if local:
        config_lib.check_local_output(unresolved.output_dir)
    config = config_lib.resolve_from_data(unresolved)
    w = config.windows
    console.say(f"windows          history {w.history}, horizon {w.horizon}, seasonal periods "
                f"{', '.join(map(str, w.seasonal_periods)) or 'none'} (context {w.context})")
    log = getattr(args, "library_log", None)
    if local and log is not None:
        console.say(f"log              {log.move_into(config.output_dir)} (TensorFlow, TFX and Beam; "
                    "--verbose prints them)")
    return config


def _print_windows_summary(examples_uri: str) -> None:
    from components.example_gen import executor, summary
    console.say(summary.format_summary(executor.read_summary(examples_uri)))
    console.say(f"summary JSON: {os.path.join(examples_uri, executor.SUMMARY_FILE)}")


def _cmd_windows(args: argparse.Namespace) -> int:
    from pipeline import local_runner
    result = local_runner.run(_resolved_config(args), windows_only=True, progress=console.stream())
    console.say(f"windows written in {result.seconds:.1f} s to {result.examples_uri}")
    _print_windows_summary(result.examples_uri)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from pipeline import local_runner
    from pipeline import report as report_lib
    config = _resolved_config(args)
    result = local_runner.run(config, progress=console.stream())
    _print_windows_summary(result.examples_uri)
    console.say(local_runner.format_component_runs(result.components))
    console.say(f"pipeline finished in {result.seconds:.1f} s; examples: {result.examples_uri}\n")
    report, report_dir = report_lib.make(config, result)
    console.say(report_lib.format_report(report))
    console.say(f"report           {os.path.join(report_dir, report_lib.HTML_FILE)}")
    if config.forecast_after_push and result.pushed_model:
        from pipeline import forecast as forecast_lib
        console.say(forecast_lib.format_summary(forecast_lib.published_forecasts(config, result.pushed_model)))
    # A run whose model is not blessed did its job, but a script chaining on it must know.
    return 0 if result.pushed_model else 2


# serve's flag for XLA-compiled models; the load error of such a model without it names this flag.
XLA_FLAG = "--xla-cpu-compilation-enabled"


def serving_plane(args: argparse.Namespace) -> "DataPlane":
    """The data plane ``serve`` runs for its parsed ``args``."""
    from serving import dataplane, repository
    batching = None
    if args.enable_batching:
        batching = dataplane.BatchingOptions(max_batch_size=args.max_batch_size,
                                             batch_timeout_s=args.batch_timeout_micros / 1e6,
                                             num_batch_threads=args.num_batch_threads)
    model = repository.ModelRepository(args.model_name, os.path.abspath(args.model_base_path),
                                       run_warmup=dataplane.run_request, poll_seconds=args.poll_seconds,
                                       num_versions=args.num_versions,
                                       xla_cpu_compilation_enabled=args.xla_cpu_compilation_enabled,
                                       xla_flag=XLA_FLAG)
    return dataplane.DataPlane(model, batching=batching)


def _cmd_serve(args: argparse.Namespace) -> int:
    # The server's own events (a version loaded, one that failed to load) on the terminal, while
    # TensorFlow's lines go to the temporary log.
    handler = logging.StreamHandler(args.library_log.terminal_stderr if args.library_log else sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    server_log = logging.getLogger("serving")
    server_log.addHandler(handler)
    server_log.setLevel(logging.INFO)
    try:
        return _serve(args)
    finally:
        server_log.removeHandler(handler)


def _serve(args: argparse.Namespace) -> int:
    from serving import grpc_server, rest
    plane = serving_plane(args)
    model = plane.repository
    try:
        server, port = grpc_server.start_server(plane, args.port, host=args.host)
    except RuntimeError as error:  # gRPC's only word for a port it cannot bind
        plane.stop()
        raise config_lib.ConfigError(f"--port {args.port}: cannot listen on {args.host}:{args.port} (in use by "
                                     "another server?)") from error
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


def _series_window(args: argparse.Namespace, context: int):
    """The settings of ``--series``, the series on its grid, and its last ``context`` points."""
    from components.example_gen import reader
    from components.example_gen.options import DataConfig
    from pipeline import local_data
    data = DataConfig(path=args.series, timestamp_column=args.timestamp_column, target_column=args.target_column,
                      series_id_column=args.series_id_column, frequency=args.frequency,
                      business_hours=args.business_hours, business_days=args.business_days)
    return data, *local_data.latest_window(reader.match_files(_data_path(args.series)), data, context, args.series_id)


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
    from pipeline import predict_input
    from serving import client as client_lib
    from serving import contract
    # The file is checked before the server is called: a mistake in it is named, not a shape error.
    given = None if args.series else predict_input.read_inputs(args.input)
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
            data, grid, values = _series_window(args, context)
            origin = int(grid.times[-1])
            extra = {contract.ORIGIN_TIMESTAMP_INPUT_KEY: [origin]} if contract.ORIGIN_TIMESTAMP_INPUT_KEY in inputs \
                else {}
            forecasts, result = forecast(values[None, :], extra)
            times = frequency.following(origin, grid.frequency, forecasts.shape[1], data.business)
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
                      f"(from its last {context} points, frequency {grid.frequency}"
                      f"{f', business hours {data.business}' if data.business else ''})")
                print(f"{'step':>4}  {'time':<19}  {'forecast':>10}{_interval_header(result)}")
                for step, (t, v) in enumerate(zip(times, forecasts[0])):
                    print(f"{step + 1:>4}  {stamp(t):<19}  {v:>10.3f}{_interval_cells(result, 0, step)}")
            return 0
        windows = given.pop(contract.INPUT_KEY)
        extra = given
        missing = sorted(set(inputs) - {contract.INPUT_KEY} - set(extra))
        if missing:
            raise client_lib.ForecastError(
                f"{args.input}: the model also needs {', '.join(missing)} (give them as JSON keys beside "
                f"\"history\"; {contract.ORIGIN_TIMESTAMP_INPUT_KEY}: epoch seconds of each window's last point)")
        unused = sorted(set(extra) - set(inputs))
        if unused:
            raise client_lib.ForecastError(f"{args.input}: the model takes no input {', '.join(unused)} "
                                           f"(it takes {', '.join(sorted(inputs))})")
        context = inputs[contract.INPUT_KEY][-1]
        if context not in (None, -1) and windows.shape[1] != context:
            raise client_lib.ForecastError(f"{args.input}: windows of {windows.shape[1]} values; the model takes "
                                           f"the last {context} points of a series")
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


def _cmd_forecast(args: argparse.Namespace) -> int:
    from pipeline import forecast as forecast_lib
    overrides = {name: getattr(args, name) for name in forecast_lib.DATA_FIELDS}
    pipeline_args = forecast_lib.beam_args(args.beam_preset, args.beam_options, args.beam_direct_running_mode,
                                           args.beam_num_workers)
    result = forecast_lib.run_forecast(
        _data_path(args.data), _data_path(args.output),
        model_base_path=_data_path(args.model_base_path) if args.model_base_path else None,
        version=args.version, server=args.server, model_name=args.model_name,
        future_covariates=_data_path(args.future_covariates) if args.future_covariates else None,
        overrides=overrides, pipeline_args=pipeline_args, progress=not args.quiet)
    print(forecast_lib.format_summary(result))
    return result.exit_code


def _add_forecast_flags(parser: argparse.ArgumentParser) -> None:
    D, P = config_lib.DataConfig, config_lib.PipelineConfig  # noqa: N806
    parser.add_argument("--model-base-path", help="directory of numbered versions (the newest is used); with "
                        "--server, read only for the model's description")
    parser.add_argument("--version", type=int, default=None, help="this version instead of the newest")
    parser.add_argument("--server", default=None, help="HOST:PORT of a running server to ask instead")
    parser.add_argument("--model-name", default=config_lib.DEFAULT_MODEL_NAME, help="with --server")
    parser.add_argument("--data", required=True, help=settings.help_of(D, "path"))
    parser.add_argument("--output", required=True, help="the forecasts: a .csv or .parquet file (a summary JSON "
                        "goes beside it)")
    parser.add_argument("--future-covariates", default=None, help="CSV/Parquet with the future covariates' values "
                        "at the forecast steps (timestamp, series id and the future covariate columns)")
    # The data settings default to the model's description; a flag given overrides it.
    for name in ("timestamp_column", "target_column", "series_id_column", "frequency", "duplicates", "gap_policy",
                 "business_hours", "business_days"):
        parser.add_argument(settings.flag_of(D, name), dest=name, default=None, choices=settings.choices_of(D, name),
                            help=settings.help_of(D, name) + " (default: as the model was trained)")
    parser.add_argument(settings.flag_of(D, "max_gap"), dest="max_gap", type=int, default=None,
                        help=settings.help_of(D, "max_gap") + " (default: as the model was trained)")
    for name in ("covariate_columns", "future_covariate_columns"):
        parser.add_argument(settings.flag_of(D, name), dest=name, type=_names, default=None,
                            help=settings.help_of(D, name) + " (default: as the model was trained)")
    _add(parser, P, "beam_preset")
    parser.add_argument(settings.flag_of(P, "beam_options"), dest="beam_options", action="append", default=[],
                        metavar="KEY=VALUE", help=settings.help_of(P, "beam_options"))
    _add(parser, P, "beam_direct_running_mode")
    _add(parser, P, "beam_num_workers", "int")
    parser.add_argument("--quiet", action="store_true", help="no progress lines (series done / total)")


def _cmd_compile_kubeflow(args: argparse.Namespace) -> int:
    from pipeline import kubeflow_runner
    spec = kubeflow_runner.compile_pipeline(_resolved_config(args, local=False), args.image, args.pipeline_json)
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
    _add(run, config_lib.PipelineConfig, "forecast_after_push", "bool")
    run.set_defaults(func=_cmd_run)

    forecast = commands.add_parser(
        "forecast", **formatter, help="forecast the next H points of every series with a pushed model",
        epilog="exit codes: 0 every series was forecast; 3 some were skipped (listed with their reasons, the "
               "others written); 1 nothing could be done (the error on one line)")
    _add_forecast_flags(forecast)
    forecast.set_defaults(func=_cmd_forecast)

    windows = commands.add_parser("windows", **formatter,
                                  help="check the data and write the windows only; print a summary")
    _add_data_flags(windows)
    windows.set_defaults(func=_cmd_windows)

    serve = commands.add_parser("serve", **formatter, help="serve pushed versions over TF Serving's gRPC API")
    serve.add_argument("--model-base-path", required=True, help="directory of numbered versions")
    serve.add_argument("--model-name", default=config_lib.DEFAULT_MODEL_NAME)
    serve.add_argument("--port", type=int, default=8500)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface, "
                       "as in a container)")
    serve.add_argument("--rest-port", type=int, default=None, help="also serve TF Serving's REST API (8501 in TF "
                       "Serving's images); off unless given")
    serve.add_argument("--poll-seconds", type=float, default=1.0, help="how often to look for new versions")
    serve.add_argument(XLA_FLAG, action="store_true",
                       help="run XLA-compiled signatures (models trained with --serving-xla); as in TF Serving, off "
                            "unless given")
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
    _add(predict, config_lib.DataConfig, "business_hours")
    _add(predict, config_lib.DataConfig, "business_days")
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
    for command in commands.choices.values():
        command.add_argument("--verbose", action="store_true",
                             help="show everything: the libraries' messages (else in OUTPUT/lstm-forecast.log for "
                                  "run, windows and demo) and the traceback of an error")
    return parser


# The commands that run the pipeline: their libraries' output goes to a log in the run's directory.
_LOGGED = ("run", "windows", "demo")
# Commands whose libraries only write on standard error (TensorFlow's start-up lines): it goes to a
# temporary log, removed unless it holds the traceback of an unexpected error.
_QUIETED = ("predict", "compile-kubeflow", "forecast", "serve")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.verbose and args.command not in _LOGGED:
        # TensorFlow's C++ information lines; the commands in _LOGGED keep them, in the log.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    log = None
    if not args.verbose and args.command in _LOGGED + _QUIETED:
        log = console.LibraryLog(stdout=args.command in _LOGGED)
    args.library_log = log
    try:
        with log if log is not None else contextlib.nullcontext():
            try:
                return args.func(args)
            except Exception as error:
                if log is not None and not isinstance(error, _known_errors()):
                    log.keep()  # a bug, or a library's failure: its traceback is for a bug report
                    with open(log.path, "a") as f:
                        traceback.print_exc(file=f)
                raise
    except KeyboardInterrupt:
        print(f"lstm-forecast {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 (every error ends in one line; --verbose shows the traceback)
        known = isinstance(error, _known_errors())
        if args.verbose:
            traceback.print_exc()
        hint = ""
        if not known and not args.verbose:
            hint = f" (unexpected: the traceback is in {log.path})" if log is not None else \
                " (unexpected: run again with --verbose for the traceback)"
        print(f"lstm-forecast {args.command}: error: {error_line(error)}{hint}", file=sys.stderr)
        return 1


def error_line(error: BaseException) -> str:
    """The one line (or block, for a summary) that reports ``error`` to the user.

    Beam re-raises an error from a worker with "[while running 'Step']" appended, a detail of the
    pipeline's insides; a file system error names its file.
    """
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    message = re.sub(r"( \[while running '[^']*'\])+$", "", str(error))
    if isinstance(error, _known_errors()):
        return message
    return f"{type(error).__name__}: {message}"


def _known_errors() -> tuple[type[Exception], ...]:
    """The errors that are the user's to fix (data, flags, files, an unreachable server)."""
    from components.example_gen.columns import DataError
    from pipeline.errors import DemoError, InputError
    from serving.client import ForecastError
    known = (DataError, config_lib.ConfigError, DemoError, InputError, ForecastError, TimeoutError, OSError)
    if "tensorflow" in sys.modules:  # else no error of its can have been raised
        # TensorFlow's file systems report as these what Python's report as OSError (gs:// unreachable).
        known += (sys.modules["tensorflow"].errors.OpError,)
    return known


if __name__ == "__main__":
    sys.exit(main())
