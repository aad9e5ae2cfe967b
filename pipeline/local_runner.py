"""Runs the pipeline here: LocalDagRunner, Beam's DirectRunner, ML Metadata in SQLite."""

import contextlib
import dataclasses
import os
import tempfile
import threading
import time
from typing import Iterator, Optional, TextIO

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

from components.example_gen.component import TimeSeriesExampleGen
from components.pusher import AtomicPusher
from pipeline.config import PipelineConfig, check_local_output, resolve_from_data
from pipeline.pipeline import create_pipeline, create_windows_pipeline


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What a run produced.

    Attributes:
      seconds: Wall time of the run.
      examples_uri: The Examples artifact of this run.
      pushed_model: Directory of the version pushed by this run, or None if the model was not
        blessed.
      components: Each component's execution, in order.
      since_ms: When the run started (ML Metadata time): its executions are the ones after.
      config: The settings the run used, resolved against the data.
    """

    seconds: float
    examples_uri: str
    pushed_model: Optional[str]
    components: tuple["ComponentRun", ...] = ()
    since_ms: int = 0
    config: Optional[PipelineConfig] = None


@dataclasses.dataclass(frozen=True)
class ComponentRun:
    """One component's execution in a run, from ML Metadata.

    Attributes:
      name: The component's id in the pipeline (its class name unless given another).
      state: ``COMPLETE``, ``CACHED``, ``FAILED``, ...
      seconds: From its registration to its last update (the driver's work comes before).
    """

    name: str
    state: str
    seconds: float


@contextlib.contextmanager
def printed_progress(stream: Optional[TextIO], metadata: metadata_store_pb2.ConnectionConfig,
                     pipeline_name: str, poll_seconds: float = 0.5) -> Iterator[None]:
    """Prints each component as it starts and ends, read from ML Metadata while the block runs.

    ML Metadata is what every TFX orchestrator records executions in, so this needs no hook into
    the runner: each execution appears when its component starts and gets its final state
    (COMPLETE, CACHED, FAILED) when it ends.
    """
    if stream is None:
        yield
        return
    since_ms, stop, seen = int(time.time() * 1000), threading.Event(), {}

    def report() -> None:
        for component in component_runs(metadata_store.MetadataStore(metadata), pipeline_name, since_ms):
            key = (component.name, component.state)
            if seen.get(component.name) == key:
                continue
            seen[component.name] = key
            ended = "" if component.state in ("NEW", "RUNNING") else f" in {component.seconds:.1f} s"
            print(f"  {component.name:<22} {component.state.lower()}{ended}", file=stream, flush=True)

    def watch() -> None:
        while not stop.wait(poll_seconds):
            report()

    thread = threading.Thread(target=watch, name="progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        report()


@contextlib.contextmanager
def scratch_tempdir() -> Iterator[str]:
    """Points Python's (and child processes') temporary directory at a fresh one, removed at the end.

    TFX packages each module file (Transform's, Trainer's) as a wheel in directories from
    ``tempfile.mkdtemp()`` that it never removes (``udf_utils.package_user_module_file``): about
    50 MB a run, which filled a 250 GB disk over a day of test runs. The wheel itself is copied into
    the pipeline root, so nothing made there is needed after the run.
    """
    saved_tempdir, saved_env = tempfile.tempdir, os.environ.get("TMPDIR")
    with tempfile.TemporaryDirectory(prefix="lstm-forecast-run-") as scratch:
        tempfile.tempdir, os.environ["TMPDIR"] = scratch, scratch
        try:
            yield scratch
        finally:
            tempfile.tempdir = saved_tempdir
            if saved_env is None:
                os.environ.pop("TMPDIR", None)
            else:
                os.environ["TMPDIR"] = saved_env


def run(config: PipelineConfig, windows_only: bool = False, progress: Optional[TextIO] = None) -> RunResult:
    """Runs the whole pipeline, or only its example generator, to completion.

    Args:
      config: The run's settings; ``output_dir`` is created if needed. Settings left to the data
        (history, seasonal periods) are resolved from it first (:func:`config.resolve_from_data`);
        the result's ``config`` holds them.
      windows_only: Run the example generator alone (check the data, write the windows).
      progress: Where to print each component as it starts and finishes (None: nowhere).

    Raises:
      ConfigError: ``output_dir`` is remote (``gs://...``): a local run writes here.

    Returns:
      Where the run's examples and pushed model are, and each component's state and time.
    """
    check_local_output(config.output_dir)
    config = resolve_from_data(config)
    os.makedirs(config.output_dir, exist_ok=True)
    started = time.time()
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
    create = create_windows_pipeline if windows_only else create_pipeline
    # Built first: bad settings fail here, before ML Metadata or any output is touched.
    with scratch_tempdir():
        pipeline = create(config, metadata)
        with printed_progress(progress, metadata, config.pipeline_name):
            tfx.orchestration.LocalDagRunner().run(pipeline)
    seconds = time.time() - started
    store = metadata_store.MetadataStore(metadata)
    since_ms = int(started * 1000)
    examples = output_artifact(store, config.pipeline_name, TimeSeriesExampleGen.__name__, "examples", since_ms)
    if examples is None:
        raise RuntimeError(f"the run recorded no examples in {config.metadata_path}")
    pushed = None if windows_only else output_artifact(store, config.pipeline_name, AtomicPusher.__name__,
                                                       "pushed_model", since_ms)
    pushed_dir = None
    if pushed is not None and pushed.custom_properties["pushed"].int_value:
        pushed_dir = pushed.custom_properties["pushed_destination"].string_value
    return RunResult(seconds=seconds, examples_uri=examples.uri, pushed_model=pushed_dir,
                     components=component_runs(store, config.pipeline_name, since_ms), since_ms=since_ms,
                     config=config)


def node_executions(store: metadata_store.MetadataStore, pipeline_name: str,
                     since_ms: int) -> list[tuple[str, metadata_store_pb2.Execution]]:
    """(node id, execution) of each execution of ``pipeline_name`` since ``since_ms``, in order."""
    # TFX records each node's executions under a context named "<pipeline>.<node id>".
    prefix = f"{pipeline_name}."
    found = []
    for context in store.get_contexts_by_type("node"):
        if context.name.startswith(prefix):
            found += [(context.name[len(prefix):], e) for e in store.get_executions_by_context(context.id)
                      if e.create_time_since_epoch >= since_ms]
    return sorted(found, key=lambda pair: pair[1].id)


def component_runs(store: metadata_store.MetadataStore, pipeline_name: str,
                   since_ms: int) -> tuple[ComponentRun, ...]:
    """The executions of ``pipeline_name``'s components since ``since_ms``, in order."""
    return tuple(ComponentRun(name=node,
                              state=metadata_store_pb2.Execution.State.Name(e.last_known_state),
                              seconds=(e.last_update_time_since_epoch - e.create_time_since_epoch) / 1000)
                 for node, e in node_executions(store, pipeline_name, since_ms))


def format_component_runs(runs: tuple[ComponentRun, ...]) -> str:
    """A table of the components of a run: name, state, seconds."""
    lines = [f"{'component':<22} {'state':<9} {'seconds':>8}"]
    lines += [f"{r.name:<22} {r.state:<9} {r.seconds:>8.1f}" for r in runs]
    return "\n".join(lines)


def output_artifact(store: metadata_store.MetadataStore, pipeline_name: str, node_id: str, output_key: str,
                    since_ms: int) -> Optional[metadata_store_pb2.Artifact]:
    """The artifact under ``output_key`` of the newest execution of ``node_id`` since ``since_ms``.

    A cached execution counts: it records the outputs it reused.
    """
    executions = [e for node, e in node_executions(store, pipeline_name, since_ms) if node == node_id]
    if not executions:
        return None
    ids = [event.artifact_id for event in store.get_events_by_execution_ids([executions[-1].id])
           if event.type == metadata_store_pb2.Event.OUTPUT and event.path.steps[0].key == output_key]
    return store.get_artifacts_by_id(ids)[0] if ids else None
