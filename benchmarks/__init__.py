"""Benchmarks of the Trainer and the exported model (scripts, not tests); shared set-up here.

Each script prints a table and one JSON line, the baseline and the candidate measured in the
same run. The CPU may be shared: note ``uptime`` next to the figures.
"""

import argparse
import contextlib
import glob
import json
import os
import statistics
import sys
import time
from typing import Any, Callable, Iterator, Optional, TextIO

from pipeline import config as config_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "data", "co2_weekly_mlo.csv")


@contextlib.contextmanager
def library_output_to(log_path: str) -> Iterator[TextIO]:
    """Sends file descriptor 2 (TensorFlow's and absl's native logs, Python warnings) to ``log_path``.

    Yields a stream to the terminal's stderr, for the script's own progress lines. Standard
    output, where the table goes, is left alone.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    terminal = os.fdopen(os.dup(saved), "w")
    with open(log_path, "a") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield terminal
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            terminal.close()


def bundled_config(run_dir: str) -> config_lib.PipelineConfig:
    """The demo's settings on the bundled data, resolved against it (1 epoch: only Transform outputs are used)."""
    return config_lib.resolve_from_data(config_lib.PipelineConfig(
        data=config_lib.DataConfig(path=DATA), output_dir=run_dir,
        model=config_lib.ModelConfig(epochs=1), evaluation=config_lib.EvaluationConfig(max_skill=1e9)))


def transform_outputs(run_dir: str) -> tuple[str, str]:
    """The Transform graph and transformed examples of a pipeline run on the bundled data.

    Runs the pipeline (:func:`bundled_config`) unless ``run_dir`` holds one.

    Returns:
      (transform graph directory, transformed examples directory with ``Split-*`` below it).
    """
    root = os.path.join(run_dir, "pipeline_root", "Transform")
    if not glob.glob(os.path.join(root, "transform_graph", "*")):
        from pipeline import local_runner
        local_runner.run(bundled_config(run_dir))
    newest = lambda pattern: max(glob.glob(os.path.join(root, pattern, "*")), key=os.path.getmtime)
    return newest("transform_graph"), newest("transformed_examples")


def kept_run(run_dir: str) -> tuple[Any, str]:
    """The ML Metadata store and the pipeline's name of a kept run (a ``--keep`` run's ``run`` directory,
    run with the default pipeline name)."""
    from ml_metadata.metadata_store import metadata_store
    from tfx import v1 as tfx
    config = config_lib.PipelineConfig(data=config_lib.DataConfig(path=run_dir), output_dir=run_dir)
    return (metadata_store.MetadataStore(tfx.orchestration.metadata.sqlite_metadata_connection_config(
        config.metadata_path)), config.pipeline_name)


def kept_sets(runs: str, datasets: str) -> tuple[list[str], Optional[str]]:
    """The data sets to read from ``runs``, a ``benchmarks.accuracy --keep`` output directory, and an error.

    Args:
      runs: The directory: each kept data set is ``<set>/run`` with its ``metadata.sqlite``.
      datasets: Comma-separated names; empty: every kept set.

    Returns:
      The names, and None, or a one-line error naming the sets that are not kept there.
    """
    kept = sorted(d for d in os.listdir(runs) if os.path.isfile(os.path.join(runs, d, "run", "metadata.sqlite"))) \
        if os.path.isdir(runs) else []
    names = [n for n in datasets.split(",") if n] or kept
    missing = [n for n in names if n not in kept]
    if not names or missing:
        return names, f"{runs}: no kept run (<set>/run/metadata.sqlite) of {', '.join(missing) or 'any data set'}"
    return names, None


def kept_runs_parser(description: str, datasets: str = "") -> argparse.ArgumentParser:
    """The command line of a script that reads a ``benchmarks.accuracy --keep`` run: ``--runs`` and
    ``--datasets`` (``datasets`` by default; empty: every kept set). The script adds its own options."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--runs", required=True, help="the --output-dir of a `benchmarks.accuracy --keep` run")
    parser.add_argument("--datasets", default=datasets,
                        help=f"comma-separated data sets under --runs (default: {datasets or 'all'})")
    return parser


def parse_kept_runs(parser: argparse.ArgumentParser,
                    argv: Optional[list[str]]) -> tuple[argparse.Namespace, Optional[list[str]]]:
    """Parses ``argv`` with a :func:`kept_runs_parser` and resolves its data sets (:func:`kept_sets`).

    Returns:
      The arguments and the data sets; None for the data sets once their error line is printed to
      standard error (the script then exits with 2).
    """
    args = parser.parse_args(argv)
    names, error = kept_sets(args.runs, args.datasets)
    if error:
        print(error, file=sys.stderr)
        return args, None
    return args, names


def data_accessor(examples_dir: str, splits: tuple[str, ...] = ("train", "eval")):
    """The DataAccessor TFX's Trainer builds for an Examples artifact at ``examples_dir``."""
    from tfx.components.trainer import fn_args_utils
    from tfx.components.util import tfxio_utils
    from tfx.types import artifact_utils, standard_artifacts

    examples = standard_artifacts.Examples()
    examples.uri = examples_dir
    examples.split_names = artifact_utils.encode_split_names(list(splits))
    return fn_args_utils.DataAccessor(
        tf_dataset_factory=tfxio_utils.get_tf_dataset_factory_from_artifact([examples], []),
        record_batch_factory=None, data_view_decode_fn=None)


def split_files(examples_dir: str, split: str) -> list[str]:
    return sorted(glob.glob(os.path.join(examples_dir, f"Split-{split}", "*")))


def latencies_ms(call: Callable[[], object], repeats: int, warmup: int = 10) -> list[float]:
    """Wall time of each of ``repeats`` calls, in ms, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return times


def interleaved_latencies_ms(calls: dict[str, Callable[[], object]], repeats: int,
                             warmup: int = 10) -> dict[str, list[float]]:
    """Milliseconds of each call, taken in turns (one call of each per round), after ``warmup`` rounds.

    On a shared CPU, load that comes and goes then slows every candidate alike: their ratios hold.
    """
    for _ in range(warmup):
        for call in calls.values():
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - start) * 1000)
    return times


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def median(values: list[float]) -> float:
    return statistics.median(values)


def print_report(title: str, header: list[str], rows: list[list[object]], result: dict) -> None:
    """The table, then the JSON line."""
    print(f"\n{title}  (load average: {os.getloadavg()[0]:.2f}, CPUs: {os.cpu_count()})")
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    for line in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths)))
    print(json.dumps(result, sort_keys=True))
