"""Executor of TimeSeriesExampleGen: reads series, writes windowed examples split by time.

The Beam graph (:func:`WindowsToExamples`) never holds the whole data set in one place: files are
read in chunks, rows are grouped per series, each series is windowed with numpy, and windows are
encoded and written in batches. The per-series work is in :mod:`grid` and :mod:`windows`. With
cuts common to all series (``split_scope`` ``global``), the first and last timestamp of all rows
reach every series' windowing as a side input.
"""

import json
import logging
import os
from typing import Any, Iterable, Iterator, Optional

import apache_beam as beam
import tensorflow as tf
from apache_beam import coders
from apache_beam.io import filebasedsink
from apache_beam.io.filesystem import CompressionTypes
from tfx import types
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils

from components import windowing
from components.example_gen import reader, summary
from components.example_gen import windows as windows_lib
from components.example_gen.options import WindowingOptions

EXAMPLES_KEY = "examples"
OPTIONS_KEY = "options"
# The file layout of TFX's own ExampleGen, so that every downstream component reads it unchanged.
FILE_PREFIX = "data_tfrecord"
FILE_SUFFIX = ".gz"
SUMMARY_FILE = "windows_summary.json"
# zlib's fastest level: on 1M windows (L=50, H=4) it wrote in 2.4 s instead of 5.6 s at the default
# level 6, for files 39% larger (79 MB against 57 MB); every reader un-gzips both the same way.
GZIP_LEVEL = 1
_FILE_REPORTS, _SERIES_REPORTS, _SPANS = "file_reports", "series_reports", "spans"


class _TFRecordBatchSink(filebasedsink.FileBasedSink):
    """Gzipped TFRecord files written from batches of serialized records, by TensorFlow's writer.

    The same files as ``beam.io.WriteToTFRecord``, and the same temporary-file, rename and
    shard-naming protocol (Beam's FileBasedSink), but each element is a batch and the records are
    framed and compressed in C++: Beam's writer compresses record by record in Python, which took
    most of this component's time (measured in benchmarks/windows.py).
    """

    def __init__(self, file_path_prefix: str):
        super().__init__(file_path_prefix, coder=coders.BytesCoder(), file_name_suffix=FILE_SUFFIX,
                         mime_type="application/octet-stream", compression_type=CompressionTypes.UNCOMPRESSED)

    def open(self, temp_path: str) -> tf.io.TFRecordWriter:
        options = tf.io.TFRecordOptions(compression_type="GZIP", compression_level=GZIP_LEVEL)
        return tf.io.TFRecordWriter(temp_path, options=options)

    def write_record(self, file_handle: tf.io.TFRecordWriter, value: list[bytes]) -> None:
        for record in value:
            file_handle.write(record)

    def close(self, file_handle: tf.io.TFRecordWriter) -> None:
        file_handle.close()


class _ReadFile(beam.DoFn):
    """Reads one file in chunks; emits ``(series_id, encoded Chunk)`` and, tagged, the file's row count."""

    def __init__(self, columns: reader.Columns):
        self._columns = columns

    def process(self, path: str) -> Iterator[Any]:
        rows = 0
        for series_id, chunk in reader.read_chunks(path, self._columns):
            rows += len(chunk)
            if len(chunk):
                yield beam.pvalue.TaggedOutput(_SPANS, (int(chunk.times.min()), int(chunk.times.max())))
            yield series_id, chunk.to_bytes()
        yield beam.pvalue.TaggedOutput(_FILE_REPORTS, {"file": path, "rows": rows})


class _WindowSeries(beam.DoFn):
    """Windows one series; emits ``(split, [serialized examples])`` batches and, tagged, its report."""

    def __init__(self, options: WindowingOptions):
        self._options = options

    def process(self, element: tuple[str, Iterable[bytes]],
                span: Optional[tuple[int, int]] = None) -> Iterator[Any]:
        series_id, encoded = element
        chunks = [reader.Chunk.from_bytes(e) for e in encoded]
        splits, report = windows_lib.window_series(series_id, chunks, self._options, span)
        for windows in splits:
            for batch in windows_lib.batches(windows):
                yield windows.split, windows_lib.encode_examples(batch)
        yield beam.pvalue.TaggedOutput(_SERIES_REPORTS, report)


def _span(spans: Iterable[Optional[tuple[int, int]]]) -> Optional[tuple[int, int]]:
    # Associative and commutative, so Beam may combine partial spans on the workers first.
    spans = [s for s in spans if s is not None]
    return (min(s[0] for s in spans), max(s[1] for s in spans)) if spans else None


def write_summary(reports: list[dict[str, Any]], options: WindowingOptions, path: str) -> None:
    """Writes the run's summary JSON, complete or not at all (written beside it, then renamed)."""
    result = summary.summarize([r for r in reports if "file" in r], [r for r in reports if "file" not in r],
                                   options)
    temporary = path + ".tmp"
    with tf.io.gfile.GFile(temporary, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
    tf.io.gfile.rename(temporary, path, overwrite=True)


@beam.ptransform_fn
def WindowsToExamples(pipeline: beam.Pipeline, files: list[str], options: WindowingOptions,  # noqa: N802
                      split_uris: dict[str, str],
                      summary_path: str) -> dict[str, beam.pvalue.PCollection]:
    """Reads the input files, windows each series and writes one TFRecord set per split.

    Args:
      pipeline: The Beam pipeline.
      files: The input files.
      options: What to do to each series.
      split_uris: Output directory of each split in :data:`windowing.SPLITS`.
      summary_path: Where the summary JSON goes.

    Returns:
      The written file names of each split.
    """
    read = (pipeline
            | "Files" >> beam.Create(files)
            # Spreads the files over workers on a distributed runner.
            | "SpreadFiles" >> beam.Reshuffle()
            | "Read" >> beam.ParDo(_ReadFile(options.columns)).with_outputs(_FILE_REPORTS, _SPANS, main="chunks"))
    span = read[_SPANS] | "Span" >> beam.CombineGlobally(_span)
    windowed = (read.chunks
                | "GroupBySeries" >> beam.GroupByKey()
                | "Window" >> beam.ParDo(_WindowSeries(options), span=beam.pvalue.AsSingleton(span))
                .with_outputs(_SERIES_REPORTS, main="batches"))
    by_split = windowed.batches | "BySplit" >> beam.Partition(
        lambda batch, _: windowing.SPLITS.index(batch[0]), len(windowing.SPLITS))
    _ = ((read[_FILE_REPORTS], windowed[_SERIES_REPORTS])
         | "Reports" >> beam.Flatten()
         | "AllReports" >> beam.combiners.ToList()
         | "Summary" >> beam.Map(write_summary, options, summary_path))
    return {
        split: (by_split[index]
                | f"Records{split}" >> beam.Values()
                | f"Write{split}" >> beam.io.Write(_TFRecordBatchSink(os.path.join(split_uris[split], FILE_PREFIX))))
        for index, split in enumerate(windowing.SPLITS)
    }


def read_summary(examples_uri: str) -> dict[str, Any]:
    """The summary that the example generator wrote into its Examples artifact."""
    with tf.io.gfile.GFile(os.path.join(examples_uri, SUMMARY_FILE)) as f:
        return json.load(f)


class Executor(base_beam_executor.BaseBeamExecutor):
    """Writes ``Split-train``, ``Split-eval`` and ``Split-test`` of gzipped tf.Example TFRecords."""

    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        examples = artifact_utils.get_single_instance(output_dict[EXAMPLES_KEY])
        options = WindowingOptions.from_json(exec_properties[OPTIONS_KEY])
        files = reader.match_files(options.data.path)
        examples.split_names = artifact_utils.encode_split_names(list(windowing.SPLITS))
        split_uris = {s: artifact_utils.get_split_uri([examples], s) for s in windowing.SPLITS}
        summary_path = os.path.join(examples.uri, SUMMARY_FILE)
        with self._make_beam_pipeline() as pipeline:
            _ = pipeline | "WindowsToExamples" >> WindowsToExamples(files, options, split_uris, summary_path)
        result = read_summary(examples.uri)
        logging.info("TimeSeriesExampleGen summary:\n%s", summary.format_summary(result))
        for split, count in result["windows"].items():
            examples.set_int_custom_property(f"windows_{split}", count)
        empty = [s for s in (windowing.TRAIN, windowing.EVAL) if not result["windows"][s]]
        if empty:
            raise reader.DataError(
                f"{options.data.path}: no {' and no '.join(empty)} windows; the data gives:\n"
                + summary.format_summary(result))
        examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_EXAMPLE)
        examples_utils.set_file_format(examples, "tfrecords_gzip")
