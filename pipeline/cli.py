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

from pipeline import config as config_lib


def _add_pipeline_flags(parser: argparse.ArgumentParser) -> None:
    defaults_w, defaults_m = config_lib.WindowConfig(), config_lib.ModelConfig()
    parser.add_argument("--data", required=True, help="CSV file of the series")
    parser.add_argument("--output", required=True, help="run directory: artifacts, metadata, pushed models")
    parser.add_argument("--timestamp-column", default="timestamp")
    parser.add_argument("--target-column", default="value")
    parser.add_argument("--history", type=int, default=defaults_w.history, help="window length L")
    parser.add_argument("--horizon", type=int, default=defaults_w.horizon, help="forecast steps H")
    parser.add_argument("--stride", type=int, default=defaults_w.stride, help="step between windows")
    parser.add_argument("--split-fractions", default=",".join(map(str, defaults_w.split_fractions)),
                        help="train,eval fractions of the time span; test takes the rest")
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
    parser.add_argument("--max-eval-mae", type=float, default=config_lib.PipelineConfig.max_eval_mae,
                        help="bless the model only if its eval MAE (original units) is below this")
    parser.add_argument("--beam-mode", choices=["in_memory", "multi_processing"], default="in_memory",
                        help="Beam DirectRunner running mode")
    parser.add_argument("--beam-workers", type=int, default=1, help="DirectRunner workers (0: one per CPU)")


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def pipeline_config_from_flags(args: argparse.Namespace) -> config_lib.PipelineConfig:
    """The :class:`PipelineConfig` that the flags of ``run`` and ``demo`` describe."""
    return config_lib.PipelineConfig(
        data=config_lib.DataConfig(path=os.path.abspath(args.data), timestamp_column=args.timestamp_column,
                                   target_column=args.target_column),
        output_dir=os.path.abspath(args.output),
        windows=config_lib.WindowConfig(history=args.history, horizon=args.horizon, stride=args.stride,
                                        split_fractions=_floats(args.split_fractions)),
        model=config_lib.ModelConfig(scaling=args.scaling, lstm_units=tuple(int(u) for u in _floats(args.lstm_units)),
                                     dropout=args.dropout, recurrent_dropout=args.recurrent_dropout,
                                     learning_rate=args.learning_rate, loss=args.loss, batch_size=args.batch_size,
                                     epochs=args.epochs, early_stopping_patience=args.early_stopping_patience,
                                     seed=args.seed, serving_xla=args.serving_xla, tune=args.tune,
                                     tuner_trials=args.tuner_trials),
        model_name=args.model_name,
        max_eval_mae=args.max_eval_mae,
        beam_direct_running_mode=args.beam_mode,
        beam_num_workers=args.beam_workers)


def _cmd_run(args: argparse.Namespace) -> int:
    from pipeline import local_runner  # pylint: disable=g-import-not-at-top
    result = local_runner.run(pipeline_config_from_flags(args))
    print(f"pipeline finished in {result.seconds:.1f} s")
    print(f"examples: {result.examples_uri}")
    print(f"pushed model: {result.pushed_model or 'none (the model was not blessed)'}")
    return 0 if result.pushed_model else 2


def _cmd_serve(args: argparse.Namespace) -> int:
    from serving import server as server_lib  # pylint: disable=g-import-not-at-top
    model_server = server_lib.ModelServer(args.model_name, os.path.abspath(args.model_base_path),
                                          poll_seconds=args.poll_seconds)
    grpc_server, port = server_lib.start_server(model_server, args.port, host=args.host)
    print(f"serving model '{args.model_name}' from {model_server.model_base_path} on {args.host}:{port}",
          flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    grpc_server.stop(grace=2).wait()
    model_server.stop()
    return 0


def _read_windows(path: str):
    import numpy as np  # pylint: disable=g-import-not-at-top
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


def _cmd_predict(args: argparse.Namespace) -> int:
    from serving import client as client_lib  # pylint: disable=g-import-not-at-top
    windows = _read_windows(args.input)
    with client_lib.ForecastClient(args.server, args.model_name, version=args.version,
                                   timeout_s=args.timeout) as client:
        forecasts = client.predict(windows)
    if args.json:
        print(json.dumps({"forecast": forecasts.tolist()}))
    else:
        for i, row in enumerate(forecasts):
            print(f"window {i}: " + "  ".join(f"{v:.3f}" for v in row))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from pipeline import demo  # pylint: disable=g-import-not-at-top
    return demo.run_demo(pipeline_config_from_flags(args), windows=args.windows,
                         ready_timeout_s=args.ready_timeout)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lstm-forecast", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the TFX pipeline and push a blessed model")
    _add_pipeline_flags(run)
    run.set_defaults(func=_cmd_run)

    serve = commands.add_parser("serve", help="serve pushed versions over TF Serving's gRPC API")
    serve.add_argument("--model-base-path", required=True, help="directory of numbered versions")
    serve.add_argument("--model-name", default=config_lib.DEFAULT_MODEL_NAME)
    serve.add_argument("--port", type=int, default=8500)
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--poll-seconds", type=float, default=1.0, help="how often to look for new versions")
    serve.set_defaults(func=_cmd_serve)

    predict = commands.add_parser("predict", help="forecasts over gRPC for windows in a file")
    predict.add_argument("--server", default="localhost:8500", help="host:port")
    predict.add_argument("--model-name", default=config_lib.DEFAULT_MODEL_NAME)
    predict.add_argument("--version", type=int, default=None)
    predict.add_argument("--input", required=True,
                         help="windows: JSON ([[...], ...] or {\"history\": ...}) or CSV, one window a row")
    predict.add_argument("--timeout", type=float, default=10.0, help="deadline of each call, seconds")
    predict.add_argument("--json", action="store_true", help="print JSON")
    predict.set_defaults(func=_cmd_predict)

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
    from components.example_gen.series import DataError  # pylint: disable=g-import-not-at-top
    from pipeline.demo import DemoError  # pylint: disable=g-import-not-at-top
    from serving.client import ForecastError  # pylint: disable=g-import-not-at-top
    return (DataError, DemoError, ForecastError, TimeoutError, FileNotFoundError)

if __name__ == "__main__":
    sys.exit(main())
