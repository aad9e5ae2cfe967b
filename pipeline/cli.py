"""The ``lstm-forecast`` command: run the pipeline, serve a model, ask it for forecasts, or all three.

Flags are parsed only here; each subcommand builds the settings objects and calls the library.
TensorFlow is imported inside the subcommands so that ``--help`` answers at once.
"""

import argparse
import json
import os
import signal
import sys
import threading
from typing import Optional, Sequence

import numpy as np

from pipeline import config as config_lib


def _add_data_flags(parser: argparse.ArgumentParser) -> None:
    defaults_d, defaults_w = config_lib.DataConfig(path=""), config_lib.WindowConfig()
    parser.add_argument("--data", required=True,
                        help="the series: a CSV or Parquet file, a directory of them, or a glob (quote it)")
    parser.add_argument("--output", required=True, help="run directory: artifacts, metadata, pushed models")
    parser.add_argument("--timestamp-column", default=defaults_d.timestamp_column,
                        help="ISO 8601 timestamps (with or without zone) or epoch seconds")
    parser.add_argument("--target-column", default=defaults_d.target_column)
    parser.add_argument("--series-id-column", default=None, help="column naming the series of each row")
    parser.add_argument("--covariate-columns", default="", help="numeric covariate columns, comma-separated")
    parser.add_argument("--frequency", default=None,
                        help="pandas offset alias, e.g. 30min, 1h, 1D, W-SAT, MS (default: inferred per series)")
    parser.add_argument("--duplicates", choices=["error", "first", "last", "mean", "sum", "min", "max"],
                        default=defaults_d.duplicates, help="repeated timestamps in a series: error, or merge")
    parser.add_argument("--gap-policy", choices=["error", "interpolate", "skip"], default=defaults_d.gap_policy,
                        help="missing points: error; interpolate runs up to --max-gap; skip windows that touch one")
    parser.add_argument("--max-gap", type=int, default=defaults_d.max_gap,
                        help="longest run of missing points that --gap-policy interpolate fills")
    parser.add_argument("--history", type=int, default=defaults_w.history, help="window length L")
    parser.add_argument("--horizon", type=int, default=defaults_w.horizon, help="forecast steps H")
    parser.add_argument("--stride", type=int, default=defaults_w.stride, help="step between windows")
    parser.add_argument("--split-fractions", default=",".join(map(str, defaults_w.split_fractions)),
                        help="train,eval fractions of each series' time span; test takes the rest")
    parser.add_argument("--split-times", default=None,
                        help="EVAL_START,TEST_START timestamps (ISO 8601), in place of --split-fractions")
    parser.add_argument("--split-gap", type=int, default=defaults_w.split_gap,
                        help="grid points left out after each split cut")
    parser.add_argument("--no-calendar-features", action="store_true",
                        help="leave out the calendar features of the forecast origin")
    parser.add_argument("--beam-mode", choices=["in_memory", "multi_processing"], default="in_memory",
                        help="Beam DirectRunner running mode")
    parser.add_argument("--beam-workers", type=int, default=1, help="DirectRunner workers (0: one per CPU)")
    parser.add_argument("--no-cache", action="store_true",
                        help="run every component again, even where its inputs and settings are unchanged")
    parser.add_argument("--beam-preset", choices=sorted(config_lib.BEAM_PRESETS), default="direct",
                        help="where Beam runs: here (direct), Dataflow, Flink or Spark")
    parser.add_argument("--beam-option", action="append", default=[], metavar="KEY=VALUE",
                        help="a Beam option, repeatable: project=, region=, temp_location=, flink_master=, ...")


def _add_pipeline_flags(parser: argparse.ArgumentParser) -> None:
    _add_data_flags(parser)
    defaults_m = config_lib.ModelConfig()
    parser.add_argument("--scaling", choices=["global", "per_series", "last_value", "window_mean"],
                        default=defaults_m.scaling, help="input scaling, fitted on the training split")
    parser.add_argument("--lstm-units", default=",".join(map(str, defaults_m.lstm_units)),
                        help="units of each stacked LSTM layer, e.g. 64,64")
    parser.add_argument("--dropout", type=float, default=defaults_m.dropout)
    parser.add_argument("--recurrent-dropout", type=float, default=defaults_m.recurrent_dropout)
    parser.add_argument("--loss", choices=["mse", "huber"], default=defaults_m.loss)
    parser.add_argument("--early-stopping-patience", type=int, default=defaults_m.early_stopping_patience,
                        help="epochs without a lower eval loss before training stops (0: off)")
    parser.add_argument("--serving-xla", action=argparse.BooleanOptionalAction, default=defaults_m.serving_xla,
                        help="compile the model in the serving signatures with XLA (default on; "
                             "TF Serving then needs --xla_cpu_compilation_enabled=true)")
    parser.add_argument("--tune", action="store_true",
                        help="search layers, units, dropout and learning rate with the TFX Tuner first")
    parser.add_argument("--tuner-trials", type=int, default=defaults_m.tuner_trials)
    parser.add_argument("--learning-rate", type=float, default=defaults_m.learning_rate)
    parser.add_argument("--batch-size", type=int, default=defaults_m.batch_size)
    parser.add_argument("--epochs", type=int, default=defaults_m.epochs)
    parser.add_argument("--seed", type=int, default=defaults_m.seed)
    parser.add_argument("--model-name", default=config_lib.DEFAULT_MODEL_NAME)
    defaults_e = config_lib.EvaluationConfig()
    parser.add_argument("--season-length", type=int, default=defaults_e.season_length,
                        help="points per season of the seasonal naive baseline (at most --history)")
    parser.add_argument("--max-skill", type=float, default=defaults_e.max_skill,
                        help="bless the model only if its eval MAE over the best naive MAE is below this")
    parser.add_argument("--regression-tolerance", type=float, default=defaults_e.regression_tolerance,
                        help="bless the model only if its eval MAE is at most this fraction above the "
                             "latest blessed model's")
    parser.add_argument("--report-series", type=int, default=defaults_e.report_series,
                        help="series drawn in the report's forecast plots")
    parser.add_argument("--keep-versions", type=int, default=config_lib.PipelineConfig.keep_versions,
                        help="newest pushed versions kept under the serving directory")


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _data_path(path: str) -> str:
    # Remote paths (gs://, s3://) stay as given; local ones are made absolute for the components.
    return path if "://" in path else os.path.abspath(path)



def pipeline_config_from_flags(args: argparse.Namespace) -> config_lib.PipelineConfig:
    """The :class:`PipelineConfig` that the flags of ``run``, ``windows`` and ``demo`` describe."""
    model = config_lib.ModelConfig()
    if hasattr(args, "scaling"):  # run and demo train a model; windows does not
        model = config_lib.ModelConfig(
            scaling=args.scaling, lstm_units=tuple(int(u) for u in _floats(args.lstm_units)),
            dropout=args.dropout, recurrent_dropout=args.recurrent_dropout, learning_rate=args.learning_rate,
            loss=args.loss, batch_size=args.batch_size, epochs=args.epochs,
            early_stopping_patience=args.early_stopping_patience, seed=args.seed, serving_xla=args.serving_xla,
            tune=args.tune, tuner_trials=args.tuner_trials)
    split_times = _names(args.split_times) if args.split_times else None
    return config_lib.PipelineConfig(
        data=config_lib.DataConfig(
            path=_data_path(args.data), timestamp_column=args.timestamp_column, target_column=args.target_column,
            series_id_column=args.series_id_column, covariate_columns=_names(args.covariate_columns),
            frequency=args.frequency, duplicates=args.duplicates, gap_policy=args.gap_policy, max_gap=args.max_gap),
        output_dir=_data_path(args.output),
        windows=config_lib.WindowConfig(history=args.history, horizon=args.horizon, stride=args.stride,
                                        split_fractions=_floats(args.split_fractions), split_times=split_times,
                                        split_gap=args.split_gap,
                                        calendar_features=not args.no_calendar_features),
        model=model,
        model_name=getattr(args, "model_name", config_lib.DEFAULT_MODEL_NAME),
        evaluation=_evaluation_config(args),
        keep_versions=getattr(args, "keep_versions", config_lib.PipelineConfig.keep_versions),
        beam_direct_running_mode=args.beam_mode,
        beam_num_workers=args.beam_workers,
        enable_cache=not args.no_cache,
        beam_preset=args.beam_preset,
        beam_options=tuple(args.beam_option))


def _evaluation_config(args: argparse.Namespace) -> config_lib.EvaluationConfig:
    if not hasattr(args, "season_length"):  # windows evaluates nothing: any valid season will do
        return config_lib.EvaluationConfig(season_length=min(args.history, config_lib.EvaluationConfig.season_length))
    return config_lib.EvaluationConfig(season_length=args.season_length, max_skill=args.max_skill,
                                       regression_tolerance=args.regression_tolerance,
                                       report_series=args.report_series)


def _print_windows_summary(examples_uri: str) -> None:
    from components.example_gen import executor, series
    print(series.format_summary(executor.read_summary(examples_uri)))
    print(f"summary JSON: {os.path.join(examples_uri, executor.SUMMARY_FILE)}")


def _cmd_windows(args: argparse.Namespace) -> int:
    from pipeline import local_runner
    result = local_runner.run(pipeline_config_from_flags(args), windows_only=True, progress=sys.stdout)
    print(f"windows written in {result.seconds:.1f} s to {result.examples_uri}")
    _print_windows_summary(result.examples_uri)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from pipeline import local_runner
    from pipeline import report as report_lib
    config = pipeline_config_from_flags(args)
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


def _read_windows(path: str):
    with open(path) as f:
        text = f.read()
    if path.endswith(".json"):
        data = json.loads(text)
        data = data.get("history", data) if isinstance(data, dict) else data
        windows = np.asarray(data, dtype=np.float32)
    else:
        windows = np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2)
    if windows.ndim == 1:
        windows = windows[None, :]
    return windows


def _series_window(args: argparse.Namespace, history: int):
    """``--series`` on its grid, and its last ``history`` points."""
    from components.example_gen import reader, series
    options = series.WindowingOptions.of(path=args.series, timestamp_column=args.timestamp_column,
                                         target_column=args.target_column, series_id_column=args.series_id_column,
                                         frequency=args.frequency)
    return series.latest_window(reader.match_files(_data_path(args.series)), options, history, args.series_id)


def _cmd_predict(args: argparse.Namespace) -> int:
    from components.example_gen import frequency
    from serving import client as client_lib
    from serving import contract
    with client_lib.ForecastClient(args.server, args.model_name, version=args.version,
                                   timeout_s=args.timeout) as client:
        if args.series:
            history = client.metadata()[contract.SIGNATURE_NAME]["inputs"][contract.INPUT_KEY][-1]
            grid, values = _series_window(args, history)
            forecast = client.predict(values[None, :])[0]
            origin = int(grid.times[-1])
            times = frequency.following(origin, grid.frequency, len(forecast))
            if args.json:
                print(json.dumps({"series_id": grid.series_id, "origin_timestamp": origin,
                                  "target_timestamps": times.tolist(), "forecast": forecast.tolist()}))
            else:
                stamp = lambda t: str(np.datetime64(int(t), "s")).replace("T00:00:00", "")  # noqa: E731
                print(f"series '{grid.series_id}', forecast origin {stamp(origin)} "
                      f"(from its last {history} points, frequency {grid.frequency})")
                print(f"{'step':>4}  {'time':<19}  {'forecast':>10}")
                for step, (t, v) in enumerate(zip(times, forecast), start=1):
                    print(f"{step:>4}  {stamp(t):<19}  {v:>10.3f}")
            return 0
        forecasts = client.predict(_read_windows(args.input))
    if args.json:
        print(json.dumps({"forecast": forecasts.tolist()}))
    else:
        for i, row in enumerate(forecasts):
            print(f"window {i}: " + "  ".join(f"{v:.3f}" for v in row))
    return 0


def _cmd_compile_kubeflow(args: argparse.Namespace) -> int:
    from pipeline import kubeflow_runner
    spec = kubeflow_runner.compile_pipeline(pipeline_config_from_flags(args), args.image, args.pipeline_json)
    tasks = spec["pipelineSpec"]["root"]["dag"]["tasks"]
    print(f"wrote {args.pipeline_json}: {len(tasks)} components ({', '.join(tasks)}) in image {args.image}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from pipeline import demo
    return demo.run_demo(pipeline_config_from_flags(args), windows=args.windows,
                         ready_timeout_s=args.ready_timeout)


def serve_batching_defaults() -> dict[str, int]:
    # The defaults of serving.dataplane.BatchingOptions, without importing TensorFlow for --help.
    return {"max_batch_size": 256, "batch_timeout_micros": 0, "num_batch_threads": 2}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lstm-forecast", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the TFX pipeline and push a blessed model")
    _add_pipeline_flags(run)
    run.set_defaults(func=_cmd_run)

    windows = commands.add_parser("windows", help="check the data and write the windows only; print a summary")
    _add_data_flags(windows)
    windows.set_defaults(func=_cmd_windows)

    serve = commands.add_parser("serve", help="serve pushed versions over TF Serving's gRPC API")
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

    predict = commands.add_parser("predict", help="forecasts over gRPC for windows in a file, or for a series")
    predict.add_argument("--server", default="localhost:8500", help="host:port")
    predict.add_argument("--model-name", default=config_lib.DEFAULT_MODEL_NAME)
    predict.add_argument("--version", type=int, default=None)
    source = predict.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", help="windows: JSON ([[...], ...] or {\"history\": ...}) or CSV, one window a row")
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

    kubeflow = commands.add_parser("compile-kubeflow",
                                   help="compile the pipeline for Kubeflow Pipelines / Vertex AI (offline)")
    _add_pipeline_flags(kubeflow)
    kubeflow.add_argument("--image", required=True, help="container image of the components (Dockerfile: pipeline)")
    kubeflow.add_argument("--pipeline-json", required=True, help="the pipeline spec to write")
    kubeflow.set_defaults(func=_cmd_compile_kubeflow)

    demo = commands.add_parser("demo", help="run the pipeline, serve the model, forecast over gRPC")
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
    from components.example_gen.series import DataError, OptionsError
    from pipeline.demo import DemoError
    from serving.client import ForecastError
    return (DataError, OptionsError, config_lib.ConfigError, DemoError, ForecastError, TimeoutError, FileNotFoundError)

if __name__ == "__main__":
    sys.exit(main())
