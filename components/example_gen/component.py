"""TimeSeriesExampleGen: the component spec and class (the work is in the executor)."""

import json
from typing import Sequence

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.example_gen import executor


class TimeSeriesExampleGenSpec(types.ComponentSpec):
    """Parameters and output of TimeSeriesExampleGen."""

    PARAMETERS = {
        "input_path": ExecutionParameter(type=str),
        "timestamp_column": ExecutionParameter(type=str),
        "target_column": ExecutionParameter(type=str),
        "history": ExecutionParameter(type=int),
        "horizon": ExecutionParameter(type=int),
        "stride": ExecutionParameter(type=int),
        # JSON list of the train and eval fractions of each series' span.
        "split_fractions": ExecutionParameter(type=str),
    }
    INPUTS = {}
    OUTPUTS = {executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}


class TimeSeriesExampleGen(base_beam_component.BaseBeamComponent):
    """Validates a CSV series, cuts sliding windows and splits them by time into train/eval/test."""

    SPEC_CLASS = TimeSeriesExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, input_path: str, timestamp_column: str, target_column: str,
                 history: int, horizon: int, stride: int, split_fractions: Sequence[float]):
        spec = TimeSeriesExampleGenSpec(
            input_path=input_path,
            timestamp_column=timestamp_column,
            target_column=target_column,
            history=history,
            horizon=horizon,
            stride=stride,
            split_fractions=json.dumps(list(split_fractions)),
            examples=types.Channel(type=standard_artifacts.Examples))
        super().__init__(spec=spec)
