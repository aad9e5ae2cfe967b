"""Executor of TimeSeriesExampleGen: reads series, writes windowed examples split by time."""

import json
import os
from typing import Any

import apache_beam as beam
from tfx import types
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils

from components import windowing
from components.example_gen import series as series_lib

EXAMPLES_KEY = "examples"
# The file layout of TFX's own ExampleGen, so that every downstream component reads it unchanged.
FILE_PREFIX = "data_tfrecord"
FILE_SUFFIX = ".gz"


def _windows_of_file(path: str, exec_properties: dict[str, Any]):
    series = series_lib.read_series(
        path, exec_properties["timestamp_column"], exec_properties["target_column"])
    for windows in series_lib.split_windows(
            series,
            history=exec_properties["history"],
            horizon=exec_properties["horizon"],
            stride=exec_properties["stride"],
            split_fractions=json.loads(exec_properties["split_fractions"])):
        yield series.series_id, windows


@beam.ptransform_fn
def WindowsToExamples(pipeline: beam.Pipeline, exec_properties: dict[str, Any],  # pylint: disable=invalid-name
                      split_uris: dict[str, str]) -> dict[str, beam.pvalue.PDone]:
    """Reads the input series, cuts windows and writes one TFRecord set per split.

    Args:
      pipeline: The Beam pipeline.
      exec_properties: The component's parameters.
      split_uris: Output directory of each split in :data:`windowing.SPLITS`.

    Returns:
      The write of each split.
    """
    windows = (
        pipeline
        | "Input" >> beam.Create([exec_properties["input_path"]])
        | "Windows" >> beam.FlatMap(_windows_of_file, exec_properties))
    return {
        split: (windows
                | f"Only{split}" >> beam.Filter(lambda sw, s=split: sw[1].split == s)
                | f"Encode{split}" >> beam.FlatMap(lambda sw: series_lib.encode_examples(*sw))
                | f"Write{split}" >> beam.io.WriteToTFRecord(
                    os.path.join(split_uris[split], FILE_PREFIX), file_name_suffix=FILE_SUFFIX))
        for split in windowing.SPLITS
    }


class Executor(base_beam_executor.BaseBeamExecutor):
    """Writes ``Split-train``, ``Split-eval`` and ``Split-test`` of gzipped tf.Example TFRecords."""

    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        examples = artifact_utils.get_single_instance(output_dict[EXAMPLES_KEY])
        examples.split_names = artifact_utils.encode_split_names(list(windowing.SPLITS))
        with self._make_beam_pipeline() as pipeline:
            split_uris = {s: artifact_utils.get_split_uri([examples], s) for s in windowing.SPLITS}
            _ = pipeline | "WindowsToExamples" >> WindowsToExamples(exec_properties, split_uris)
        examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_EXAMPLE)
        examples_utils.set_file_format(examples, "tfrecords_gzip")
