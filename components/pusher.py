"""AtomicPusher: TFX's Pusher, except that a version directory appears complete or not at all.

TF Serving (and the local server) load a numbered version directory as soon as it appears under the
model base path; TFX's own Pusher copies into that directory file by file, so a server can find
it half-written (tensorflow/serving#631). Here the model is copied beside it, under a name no
server takes for a version, and renamed into place; the newest ``keep_versions`` versions are kept.
A model that is already the newest version (the same TensorFlow fingerprint) is not pushed again.

The blessing must be the model's own or, for a refit on train+eval (the pipeline's RefitTrainer),
that of the model it refits: its training record names that model, and the Evaluator's blessing
names the model it blessed; a push under any other blessing is refused.
"""

import json
import os
import time
from typing import Any, Optional

import tensorflow as tf
from absl import logging
from tfx import types
from tfx.components.evaluator import constants as evaluator_constants
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.components.base import executor_spec
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, path_utils, proto_utils
from tfx.v1.components import Pusher

from components.trainer_options import read_training_record
from serving import versions as versions_lib

# Where a version is assembled: a dot name, not a number, so servers skip it while it is written.
STAGING_PREFIX = ".staging-"
KEEP_VERSIONS_KEY = "keep_versions"


def push_atomically(model_path: str, base_directory: str, version: int, keep_versions: int) -> str:
    """Copies a SavedModel to ``base_directory/version`` in one rename, then prunes old versions.

    Args:
      model_path: The SavedModel to push.
      base_directory: The model base path servers watch.
      version: The new version's number (a new version must be larger than those there).
      keep_versions: How many of the newest versions to keep (>= 1); older ones are deleted.

    Returns:
      The new version's directory.

    Raises:
      FileExistsError: The version is already there (nothing is changed).
    """
    if keep_versions < 1:
        raise ValueError(f"keep_versions must be >= 1, got {keep_versions}")
    target = versions_lib.version_path(base_directory, version)
    if tf.io.gfile.exists(target):
        raise FileExistsError(f"{target} exists already")
    tf.io.gfile.makedirs(base_directory)
    staging = os.path.join(base_directory, f"{STAGING_PREFIX}{version}-{os.getpid()}")
    if tf.io.gfile.exists(staging):
        tf.io.gfile.rmtree(staging)
    try:
        io_utils.copy_dir(model_path, staging)
        # One rename on a local or POSIX file system: the version appears whole. (On object
        # stores such as GCS a rename is a copy; serve from a file system, or a mounted bucket.)
        tf.io.gfile.rename(staging, target)
    finally:
        if tf.io.gfile.exists(staging):
            tf.io.gfile.rmtree(staging)
    for old in versions_lib.list_versions(base_directory)[:-keep_versions]:
        tf.io.gfile.rmtree(versions_lib.version_path(base_directory, old))
    return target


# Written by TensorFlow into every SavedModel: hashes of its graph, signatures and checkpoint.
_FINGERPRINT_FILE = "fingerprint.pb"


def same_saved_model(path: str, other: str) -> bool:
    """Whether two SavedModel directories hold the same model, by their TensorFlow fingerprints.

    False when either lacks a fingerprint (a SavedModel from before TF 2.12), so that the model
    is pushed rather than wrongly taken for one already served.
    """
    files = [os.path.join(p, _FINGERPRINT_FILE) for p in (path, other)]
    if not all(tf.io.gfile.exists(f) for f in files):
        return False
    with tf.io.gfile.GFile(files[0], "rb") as a, tf.io.gfile.GFile(files[1], "rb") as b:
        return a.read() == b.read()


def blessing_problem(model_uri: str, record: Optional[dict[str, Any]], blessed_uri: str) -> str:
    """Why the model at ``model_uri`` may not be pushed under a blessing of ``blessed_uri``, or ``""``.

    Args:
      model_uri: The Model artifact's URI.
      record: Its training record (:data:`components.trainer_options.TRAINING_RECORD_FILE`), or None.
      blessed_uri: The URI of the Model artifact the blessing names (the Evaluator's ``current_model``).
    """
    refit_of = (record or {}).get("refit_of")
    if refit_of:
        if os.path.normpath(refit_of) == os.path.normpath(path_utils.serving_model_path(blessed_uri)):
            return ""
        return f"the model refits {refit_of}, but the blessing is for {blessed_uri}"
    if os.path.normpath(model_uri) == os.path.normpath(blessed_uri):
        return ""
    return f"the blessing is for {blessed_uri}, not for the model {model_uri}"


class AtomicPushExecutor(pusher_executor.Executor):
    """Pushes a blessed model with :func:`push_atomically` (filesystem destinations)."""

    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        model_push = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return
        model_path = self.GetModelPath(input_dict)
        blessing = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_BLESSING_KEY])
        blessed_uri = blessing.get_string_custom_property(evaluator_constants.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY)
        if blessed_uri:  # the Evaluator's blessings name their model; other validators' may not
            model_uri = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_KEY]).uri
            problem = blessing_problem(model_uri, read_training_record(model_path), blessed_uri)
            if problem:
                raise ValueError(f"AtomicPusher: not pushing {model_path}: {problem}")
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        custom_config = json.loads(exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "null") or {}
        keep = int(custom_config.get(KEEP_VERSIONS_KEY, 5))
        base = destination.filesystem.base_directory
        versions = versions_lib.list_versions(base)
        newest = versions_lib.version_path(base, versions[-1]) if versions else None
        if newest and same_saved_model(model_path, newest):
            # A re-run blessing the model already served (its first comparison with itself as the
            # latest blessed model) must not make servers reload it as a new version.
            logging.info("AtomicPusher: %s is already served as %s; nothing pushed", model_path, newest)
            version, serving_path = versions[-1], newest
        else:
            # Seconds since the epoch, as TFX's Pusher numbers versions, but always above the newest.
            version = max([int(time.time()), *(v + 1 for v in versions)])
            serving_path = push_atomically(model_path, base, version, keep)
        io_utils.copy_dir(model_path, model_push.uri)
        self._MarkPushed(model_push, pushed_destination=serving_path, pushed_version=str(version))


class AtomicPusher(Pusher):
    """TFX's Pusher with :class:`AtomicPushExecutor`; ``custom_config={"keep_versions": N}``."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(AtomicPushExecutor)
