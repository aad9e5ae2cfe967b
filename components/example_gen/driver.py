"""Driver of TimeSeriesExampleGen: fingerprints the input files when a run starts.

TFX reuses a cached execution when its properties are unchanged. The input path alone does not
change when the data does, so the driver adds the files' fingerprint (name, size and modification
time of each, TFX's own recipe) to the properties before the cache is consulted, as TFX's
FileBasedExampleGen does with its input fingerprint.
"""

import copy

from tfx.dsl.components.base import base_driver
from tfx.orchestration import data_types_utils, metadata
from tfx.orchestration.portable import base_driver as ir_base_driver
from tfx.orchestration.portable import data_types as portable_data_types
from tfx.proto.orchestration import driver_output_pb2
from tfx.utils import io_utils

from components.example_gen import reader
from components.example_gen.executor import EXAMPLES_KEY, OPTIONS_KEY
from components.example_gen.options import WindowingOptions

FINGERPRINT_KEY = "input_fingerprint"


def input_fingerprint(files: list[str]) -> str:
    """Name, size and modification time (seconds) of every file, in one string."""
    return ";".join(io_utils.generate_fingerprint(path, path) for path in sorted(files))


class InputFingerprintDriver(base_driver.BaseDriver, ir_base_driver.BaseDriver):
    """Adds :data:`FINGERPRINT_KEY` to the execution's properties and to the Examples artifact."""

    def __init__(self, metadata_handle: metadata.Metadata):
        base_driver.BaseDriver.__init__(self, metadata_handle)
        ir_base_driver.BaseDriver.__init__(self, metadata_handle)

    def run(self, execution_info: portable_data_types.ExecutionInfo) -> driver_output_pb2.DriverOutput:
        options = WindowingOptions.from_json(execution_info.exec_properties[OPTIONS_KEY])
        fingerprint = input_fingerprint(reader.match_files(options.data.path))
        result = driver_output_pb2.DriverOutput()
        for key, value in {**execution_info.exec_properties, FINGERPRINT_KEY: fingerprint}.items():
            if value is not None:
                data_types_utils.set_metadata_value(result.exec_properties[key], value)
        examples = copy.deepcopy(execution_info.output_dict[EXAMPLES_KEY][0].mlmd_artifact)
        examples.custom_properties[FINGERPRINT_KEY].string_value = fingerprint
        result.output_artifacts[EXAMPLES_KEY].artifacts.append(examples)
        return result
