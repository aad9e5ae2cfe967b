"""The on-disk layout of a model base path, shared by whatever writes versions and whatever serves them.

A model base path holds one directory per version, named by its number in decimal
(``<base>/<version>/``, a SavedModel). TF Serving, the local server (:mod:`serving.repository`)
and the pusher (:mod:`components.pusher`) agree on this layout through this module: any other
entry (a staging directory, a stray file) is not a version.

Light on purpose: the pusher imports it, and it needs neither gRPC nor the server.
"""

import os


def version_path(model_base_path: str, version: int) -> str:
    """The directory of ``version`` under the base path."""
    return os.path.join(model_base_path, str(version))


def list_versions(model_base_path: str) -> list[int]:
    """Numbered version directories under the base path, ascending; other entries are ignored.

    Args:
      model_base_path: A local path, or any URL TensorFlow's file systems read (``gs://...``).

    Returns:
      The version numbers; empty when the base path does not exist yet.
    """
    # TensorFlow's file systems read the same URLs TF Serving watches; imported here so that
    # importing this module costs nothing for a caller that only needs version_path.
    import tensorflow as tf

    if not tf.io.gfile.isdir(model_base_path):
        return []
    return sorted(int(name.rstrip("/")) for name in tf.io.gfile.listdir(model_base_path)
                  if name.rstrip("/").isdigit())
