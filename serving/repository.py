"""The model repository of the local server: which versions of one model are loaded, and loading them.

It does what TF Serving's model manager does for one model under its file system source:

* versions load through the SavedModel loader TF Serving uses (the ``serve`` MetaGraph into a TF1
  session, signature tensors run by name), and the warmup requests of ``assets.extra`` are
  replayed before a version is AVAILABLE;
* policy ``latest``: the ``num_versions`` newest versions stay loaded; a newer one, found by
  polling, is loaded and warmed up before it replaces an older one, and a replaced version closes
  when the last request running on it ends, so a swap fails no request in flight;
* a version that fails to load is END with its error, tried again a few times as TF Serving
  does, and the versions already loaded keep serving.

Requests are the data plane's (:mod:`serving.dataplane`); this module knows no request format
beyond the warmup file, and replays that through the function it is given.
"""

import contextlib
import dataclasses
import enum
import logging
import os
import threading
import time
from typing import Callable, Iterator, Optional

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from serving import contract, versions

_log = logging.getLogger(__name__)


class LoadedVersion:
    """One version of the model, loaded into its own graph and session.

    Requests run inside :meth:`use`; a version replaced by a newer one is closed only when the last
    request still running on it has finished, so a swap never fails a request in flight.
    """

    def __init__(self, version: int, path: str, session: tf.compat.v1.Session,
                 signatures: dict[str, meta_graph_pb2.SignatureDef]):
        self.version = version
        self.path = path
        self.session = session
        self.signatures = signatures
        self._lock = threading.Lock()
        self._in_flight = 0
        self._retired = False

    @contextlib.contextmanager
    def use(self) -> Iterator["LoadedVersion"]:
        """Keeps the session open for the duration of the block."""
        with self._lock:
            self._in_flight += 1
        try:
            yield self
        finally:
            with self._lock:
                self._in_flight -= 1
                close = self._retired and self._in_flight == 0
            if close:
                self.session.close()

    def retire(self) -> None:
        """Closes the session now, or when the last request running on it ends."""
        with self._lock:
            self._retired = True
            close = self._in_flight == 0
        if close:
            self.session.close()

    def run(self, signature: meta_graph_pb2.SignatureDef, inputs: dict[str, np.ndarray],
            aliases: list[str]) -> dict[str, np.ndarray]:
        """Runs a signature by tensor names, as TF Serving does; TensorFlow's errors propagate."""
        with self.use():
            return self.session.run({alias: signature.outputs[alias].name for alias in aliases},
                                    feed_dict={signature.inputs[a].name: v for a, v in inputs.items()})


def xla_functions(meta_graph: meta_graph_pb2.MetaGraphDef) -> list[str]:
    """Functions of a graph that must be compiled with XLA (``jit_compile=True`` when traced)."""
    return [f.signature.name for f in meta_graph.graph_def.library.function
            if "_XlaMustCompile" in f.attr and f.attr["_XlaMustCompile"].b]


# The flag that turns XLA compilation on in TF Serving. A server started by another command passes
# its own spelling (`lstm-forecast serve`: --xla-cpu-compilation-enabled), so the error names the
# flag of the command the user ran.
TF_SERVING_XLA_FLAG = "--xla_cpu_compilation_enabled=true"


def load_version(path: str, version: int, xla_cpu_compilation_enabled: bool = True,
                 xla_flag: str = TF_SERVING_XLA_FLAG) -> LoadedVersion:
    """Loads a SavedModel the way TF Serving does: the ``serve`` MetaGraph into a TF1 session.

    Args:
      path: The version's directory.
      version: Its number.
      xla_cpu_compilation_enabled: TF Serving's ``--xla_cpu_compilation_enabled`` (false by default
        in TF Serving and in :class:`ModelRepository`). Without it TF Serving cannot run an
        XLA-compiled signature and the warmup replay fails the load; this loader refuses such a
        graph at once, with a message that names the flag.
      xla_flag: That flag as the user's command spells it, for the message.

    Returns:
      The loaded version, its session open.
    """
    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph)
    meta_graph = tf.compat.v1.saved_model.loader.load(session, [contract.SERVING_TAG], path)
    compiled = xla_functions(meta_graph)
    if compiled and not xla_cpu_compilation_enabled:
        session.close()
        raise RuntimeError(f"{path}: the model was exported with XLA ({len(compiled)} function(s) with jit_compile) "
                           f"and XLA CPU compilation is off: start the server with {xla_flag}, or export the "
                           f"model without XLA (the default: train without --serving-xla)")
    return LoadedVersion(version=version, path=path, session=session,
                         signatures=dict(meta_graph.signature_def))


def warmup_requests(path: str) -> list[predict_pb2.PredictRequest]:
    """The Predict requests of a SavedModel's warmup file (:data:`serving.contract.WARMUP_FILE`)."""
    warmup_file = os.path.join(path, contract.WARMUP_FILE)
    if not tf.io.gfile.exists(warmup_file):
        return []
    requests = []
    for record in tf.data.TFRecordDataset([warmup_file]).as_numpy_iterator():
        log = prediction_log_pb2.PredictionLog.FromString(record)
        if log.HasField("predict_log"):
            requests.append(log.predict_log.request)
    return requests


class State(enum.Enum):
    """A version's state, named as TF Serving's ``ModelVersionStatus.State`` names it."""

    LOADING = "LOADING"
    AVAILABLE = "AVAILABLE"
    END = "END"


@dataclasses.dataclass(frozen=True)
class VersionState:
    """Where one version stands.

    Attributes:
      version: The version number.
      state: Its state.
      error: Why it failed to load, for a version in END; empty otherwise.
    """

    version: int
    state: State
    error: str = ""


@dataclasses.dataclass(frozen=True)
class _Failure:
    error: str
    tries: int
    last_try: float  # time.monotonic()


class ModelRepository:
    """The loaded versions of one model, kept up to date with its model base path.

    Args:
      model_name: Name clients put in ``model_spec.name``.
      model_base_path: Directory holding numbered version directories (:mod:`serving.versions`).
      run_warmup: Runs one warmup request on a version being loaded, raising to fail the load:
        :func:`serving.dataplane.run_request`, so that warmup takes the path of a client's request.
      poll_seconds: How often to look for new versions (TF Serving's file system poll).
      max_load_retries: Further tries of a version that failed to load (TF Serving: 5).
      load_retry_seconds: Time between those tries (TF Serving: 60 s).
      num_versions: How many of the newest versions stay loaded, each addressable by number;
        requests without a version go to the newest (TF Serving's ``latest`` policy).
      xla_cpu_compilation_enabled: Run XLA-compiled signatures (TF Serving's flag of that name,
        false by default there and here); without it a version that uses XLA fails to load. The
        default export does not use XLA.
      xla_flag: How the command that started this server spells that flag, for the load error.
    """

    def __init__(self, model_name: str, model_base_path: str,
                 run_warmup: Callable[[LoadedVersion, predict_pb2.PredictRequest], object],
                 poll_seconds: float = 1.0, max_load_retries: int = 5, load_retry_seconds: float = 60.0,
                 num_versions: int = 1, xla_cpu_compilation_enabled: bool = False,
                 xla_flag: str = TF_SERVING_XLA_FLAG):
        self.model_name = model_name
        self.model_base_path = model_base_path
        self._run_warmup = run_warmup
        self._poll_seconds = poll_seconds
        self._max_load_retries = max_load_retries
        self._load_retry_seconds = load_retry_seconds
        self._num_versions = num_versions
        self._xla = xla_cpu_compilation_enabled
        self._xla_flag = xla_flag
        # Newest last; replaced as a whole so that readers need no lock.
        self._loaded: tuple[LoadedVersion, ...] = ()
        self._failed: dict[int, _Failure] = {}
        self._listeners: tuple[Callable[[bool], None], ...] = ()
        self._stop = threading.Event()
        self._poller: Optional[threading.Thread] = None

    @property
    def loaded(self) -> tuple[LoadedVersion, ...]:
        """The loaded versions, oldest first."""
        return self._loaded

    @property
    def current(self) -> Optional[LoadedVersion]:
        """The newest loaded version."""
        loaded = self._loaded
        return loaded[-1] if loaded else None

    def add_listener(self, listener: Callable[[bool], None]) -> None:
        """Calls ``listener(available)`` now, after each version loaded, and with False on :meth:`stop`.

        ``available``: whether any version is loaded (what a health check reports).
        """
        self._listeners = (*self._listeners, listener)
        listener(bool(self._loaded))

    def version_states(self) -> list[VersionState]:
        """The versions TF Serving's GetModelStatus reports: failed ones, then loaded ones.

        While nothing is loaded, the newest version on disk that has not failed is LOADING. Empty
        when the base path holds no version at all.
        """
        loaded = self._loaded
        states = [VersionState(version, State.END, failure.error)
                  for version, failure in sorted(self._failed.items())]
        states += [VersionState(version.version, State.AVAILABLE) for version in loaded]
        if not loaded:
            pending = [v for v in versions.list_versions(self.model_base_path) if v not in self._failed]
            states += [VersionState(version, State.LOADING) for version in pending[-1:]]
        return states

    def start_polling(self) -> None:
        """Loads versions in the background, as TF Serving does: the server answers meanwhile."""
        self._poller = threading.Thread(target=self._poll_loop, name="version-poller", daemon=True)
        self._poller.start()

    def stop(self) -> None:
        """Stops polling, reports no version available, and closes the versions once idle."""
        self._stop.set()
        if self._poller is not None:
            self._poller.join()
        self._notify(False)
        for loaded in self._loaded:
            loaded.retire()

    def poll_once(self) -> None:
        """Loads the newest ``num_versions`` versions on disk that are not loaded yet, newest first.

        A new version is loaded and warmed up before it replaces an old one, so that requests
        always find a version (TF Serving's availability-preserving policy).
        """
        wanted = versions.list_versions(self.model_base_path)[-self._num_versions:]
        for version in reversed(wanted):
            loaded_versions = [v.version for v in self._loaded]
            if version in loaded_versions or not self._may_try(version):
                continue
            if len(loaded_versions) >= self._num_versions and version < min(loaded_versions):
                continue
            self._load(version)

    def _may_try(self, version: int) -> bool:
        failure = self._failed.get(version)
        if failure is None:
            return True
        return (failure.tries <= self._max_load_retries
                and time.monotonic() - failure.last_try >= self._load_retry_seconds)

    def _load(self, version: int) -> None:
        path = versions.version_path(self.model_base_path, version)
        try:
            loaded = load_version(path, version, self._xla, self._xla_flag)
            self._warm_up(loaded)
        except Exception as error:
            # A version that fails to load is reported; the ones being served keep serving.
            tries = self._failed[version].tries + 1 if version in self._failed else 1
            message = str(error).strip()
            self._failed[version] = _Failure(message.splitlines()[0] if message else repr(error),
                                             tries, time.monotonic())
            _log.error("version %d of model %s failed to load from %s (try %d): %s",
                       version, self.model_name, path, tries, error)
            return
        self._failed.pop(version, None)
        kept = tuple(sorted((*self._loaded, loaded), key=lambda v: v.version))[-self._num_versions:]
        unloaded = [v for v in self._loaded if v not in kept]
        self._loaded = kept
        self._notify(True)
        _log.info("serving version %d of model %s from %s", version, self.model_name, path)
        for old in unloaded:
            old.retire()

    def _warm_up(self, loaded: LoadedVersion) -> None:
        # Replayed before the version is AVAILABLE, so that no client pays for the first runs
        # (graph optimisation, XLA compilation); a warmup request that fails fails the load.
        for request in warmup_requests(loaded.path):
            self._run_warmup(loaded, request)

    def _notify(self, available: bool) -> None:
        for listener in self._listeners:
            listener(available)

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self._poll_seconds)
