"""The serving contract: the one place that names what a pushed model takes and returns.

The trainer's export, the local server, the gRPC client and the tests all import these names, so
a change here is a change of the contract, visible in one diff.

A forecasting SavedModel has two signatures:

* ``serving_default`` (:data:`SIGNATURE_NAME`): raw windows in, forecasts in original units out.
  Input :data:`INPUT_KEY` float32 ``[batch, L]``; output :data:`OUTPUT_KEY` float32 ``[batch, H]``.
* ``serving_examples`` (:data:`EXAMPLES_SIGNATURE_NAME`): serialized ``tf.Example`` protos in (as
  written by the example generator), the same forecasts out. The Evaluator and batch scoring use
  it.
"""

from typing import Final

import numpy as np

SIGNATURE_NAME: Final = "serving_default"
EXAMPLES_SIGNATURE_NAME: Final = "serving_examples"
# TF Serving's method name for Predict signatures.
PREDICT_METHOD_NAME: Final = "tensorflow/serving/predict"
SERVING_TAG: Final = "serve"

INPUT_KEY: Final = "history"
EXAMPLES_INPUT_KEY: Final = "examples"
OUTPUT_KEY: Final = "forecast"
INPUT_DTYPE: Final = np.float32
OUTPUT_DTYPE: Final = np.float32
