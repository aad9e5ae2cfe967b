"""TimeSeriesExampleGen: the component spec and class (the work is in the executor)."""

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.example_gen import driver, executor
from components.example_gen.options import WindowingOptions


class TimeSeriesExampleGenSpec(types.ComponentSpec):
    """Parameters and output of TimeSeriesExampleGen."""

    PARAMETERS = {
        # WindowingOptions as JSON: the input path (a file, a directory of CSV/Parquet files, or a
        # glob), its columns, frequency and policies, L, H, S and the split cuts.
        executor.OPTIONS_KEY: ExecutionParameter(type=str),
    }
    INPUTS = {}
    OUTPUTS = {executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}


class TimeSeriesExampleGen(base_beam_component.BaseBeamComponent):
    """Validates time series, cuts sliding windows and splits them by time into train/eval/test."""

    SPEC_CLASS = TimeSeriesExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
    # Fingerprints the input files, so that a cached run is reused only while they are unchanged.
    DRIVER_CLASS = driver.InputFingerprintDriver

    def __init__(self, options: WindowingOptions):
        spec = TimeSeriesExampleGenSpec(
            options=options.to_json(),
            examples=types.Channel(type=standard_artifacts.Examples))
        super().__init__(spec=spec)
