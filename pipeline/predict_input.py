"""The inputs that ``lstm-forecast predict --input`` sends, read from a JSON or CSV file and checked.

Everything is checked before any call to the server, so that a mistake is one line naming the file,
the window (JSON) or line (CSV), and the input, rather than a shape error from the server.

Accepted JSON (``N`` windows of ``L`` values; the further inputs are the model's, see
``serving/contract.py``):

- ``[[...], ...]``: the histories, ``[N, L]``; ``[...]``: one history.
- ``{"history": [[...], ...], "origin_timestamp": [...], "future_<column>": [[...], ...]}``.
- TF Serving's REST request bodies: ``{"instances": [[...], ...]}`` or ``{"instances": [{"history":
  [...], "origin_timestamp": t}, ...]}`` (row format), and ``{"inputs": ...}`` (columnar format,
  either of the two forms above), with an optional ``"signature_name": "serving_default"``.

CSV: one history a line, its values separated by commas; blank lines are skipped.
"""

import csv
import json
import math
from typing import Any

import numpy as np

from components.example_gen.reader import MAX_ABS_VALUE
from pipeline.errors import InputError
from serving import contract

_KNOWN = (f"{contract.INPUT_KEY}, {contract.ORIGIN_TIMESTAMP_INPUT_KEY}, {contract.SERIES_ID_INPUT_KEY}, "
          f"{contract.COVARIATE_INPUT_PREFIX}<column>, {contract.FUTURE_INPUT_PREFIX}<column>")


def read_inputs(path: str) -> dict[str, np.ndarray]:
    """The model inputs in a windows file, by input name, ``history`` first.

    Args:
      path: A ``.json`` file (see the module's docstring) or a CSV file, one window a line.

    Returns:
      ``history`` as float32 ``[N, L]``, and any further input with its first dimension ``N``:
      ``origin_timestamp`` int64 ``[N]``, ``series_id`` ``[N]`` strings, covariates float32 ``[N, K]``.

    Raises:
      InputError: The file is missing or not valid, or an input has a wrong value or shape; the
        message names the file, the window or line, and the input.
    """
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read it: {error}") from None
    if not path.endswith(".json"):
        return {contract.INPUT_KEY: _csv_windows(path, text)}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"{path}:{error.lineno}:{error.colno}: not valid JSON: {error.msg}") from None
    columns = _columns(path, data)
    unknown = [k for k in columns if not _known(k)]
    if unknown:
        raise InputError(f"{path}: unknown input '{unknown[0]}' (inputs: {_KNOWN})")
    if contract.INPUT_KEY not in columns:
        raise InputError(f"{path}: no \"{contract.INPUT_KEY}\" (keys: {', '.join(columns)})")
    history = _matrix(path, contract.INPUT_KEY, columns[contract.INPUT_KEY])
    inputs = {contract.INPUT_KEY: history}
    for key, value in columns.items():
        if key != contract.INPUT_KEY:
            inputs[key] = _input(path, key, value, len(history))
    return inputs


def _known(key: str) -> bool:
    return key in (contract.INPUT_KEY, contract.ORIGIN_TIMESTAMP_INPUT_KEY, contract.SERIES_ID_INPUT_KEY) or \
        key.startswith((contract.COVARIATE_INPUT_PREFIX, contract.FUTURE_INPUT_PREFIX))


def _columns(path: str, data: Any) -> dict[str, Any]:
    """The inputs of a JSON document by name, whichever accepted shape it has."""
    if not isinstance(data, dict):
        return {contract.INPUT_KEY: data}
    body = dict(data)
    signature = body.pop("signature_name", contract.SIGNATURE_NAME)
    if signature != contract.SIGNATURE_NAME:
        raise InputError(f"{path}: signature_name {signature!r}: the model serves only '{contract.SIGNATURE_NAME}'")
    if "instances" in body:
        return _instances(path, body["instances"])
    if "inputs" in body:
        inputs = body["inputs"]
        return dict(inputs) if isinstance(inputs, dict) else {contract.INPUT_KEY: inputs}
    return body


def _instances(path: str, instances: Any) -> dict[str, Any]:
    """TF Serving's row format: a list of histories, or of objects holding one window's inputs each."""
    if not isinstance(instances, list) or not instances:
        raise InputError(f"{path}: instances: no instances")
    if not all(isinstance(i, dict) for i in instances):
        return {contract.INPUT_KEY: instances}
    keys = list(instances[0])
    for n, instance in enumerate(instances[1:], start=2):
        if sorted(instance) != sorted(keys):
            raise InputError(f"{path}: instances: instance {n} has inputs {', '.join(sorted(instance))}; "
                             f"instance 1 has {', '.join(sorted(keys))}")
    return {k: [instance[k] for instance in instances] for k in keys}


def _show(value: Any) -> str:
    return json.dumps(value)[:40]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _matrix(path: str, key: str, rows: Any) -> np.ndarray:
    """``[N, K]`` float32 from a list of windows (or one window), every value checked."""
    if not isinstance(rows, list) or not rows:
        got = "" if isinstance(rows, list) else f"; got {_show(rows)}"
        raise InputError(f"{path}: {key}: no windows (give a list of windows, each a list of numbers){got}")
    if all(_is_number(x) for x in rows):
        rows = [rows]  # one window
    width = None
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, list):
            raise InputError(f"{path}: {key}: window {i}: not a list of numbers: {_show(row)}")
        if not row:
            raise InputError(f"{path}: {key}: window {i} has no values")
        for j, value in enumerate(row, start=1):
            _check_value(f"{path}: {key}: window {i}, value {j}", value, _show)
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise InputError(f"{path}: {key}: window {i} has {len(row)} values, window 1 has {width}; "
                             "all windows must be as long")
    return np.asarray(rows, dtype=np.float32)


def _check_value(where: str, value: Any, show) -> None:
    if not _is_number(value):
        raise InputError(f"{where}: not a number: {show(value)}")
    if math.isnan(value):
        raise InputError(f"{where}: nan is not a value (a window cannot have gaps)")
    if abs(value) > MAX_ABS_VALUE:
        raise InputError(f"{where}: {value:g} is beyond ±{MAX_ABS_VALUE:.0e}, more than the model can hold")


def _input(path: str, key: str, value: Any, windows: int) -> np.ndarray:
    """A further input, with one entry per window."""
    if key in (contract.ORIGIN_TIMESTAMP_INPUT_KEY, contract.SERIES_ID_INPUT_KEY):
        if not isinstance(value, list):
            value = [value]
        if len(value) != windows:
            raise InputError(f"{path}: {key}: {len(value)} value{'s' * (len(value) != 1)} for {windows} windows")
        for i, item in enumerate(value, start=1):
            if key == contract.SERIES_ID_INPUT_KEY and not isinstance(item, str):
                raise InputError(f"{path}: {key}: window {i}: not a series id (a string): {_show(item)}")
            if key == contract.ORIGIN_TIMESTAMP_INPUT_KEY and not (
                    _is_number(item) and math.isfinite(item) and float(item).is_integer()):
                raise InputError(f"{path}: {key}: window {i}: not epoch seconds: {_show(item)}")
        return np.asarray(value, dtype=contract.input_dtype(key))
    matrix = _matrix(path, key, value)
    if len(matrix) != windows:
        raise InputError(f"{path}: {key}: {len(matrix)} windows for {windows} histories")
    return matrix


def _csv_windows(path: str, text: str) -> np.ndarray:
    """``[N, L]`` from CSV text, one window a line."""
    rows, width, first = [], None, None
    for line, cells in enumerate(csv.reader(text.splitlines()), start=1):
        if not cells or all(not c.strip() for c in cells):
            continue
        row = []
        for j, cell in enumerate(cells, start=1):
            try:
                value = float(cell)
            except ValueError:
                hint = " (values are separated by commas)" if ";" in cell or "\t" in cell else ""
                raise InputError(f"{path}:{line}: value {j}: not a number: '{cell.strip()}'{hint}") from None
            _check_value(f"{path}:{line}: value {j}", value, lambda v: f"'{v}'")
            row.append(value)
        if width is None:
            width, first = len(row), line
        elif len(row) != width:
            raise InputError(f"{path}:{line}: {len(row)} values, line {first} has {width}; all windows must be as long")
        rows.append(row)
    if not rows:
        raise InputError(f"{path}: no windows (one window a line, its values separated by commas)")
    return np.asarray(rows, dtype=np.float32)
