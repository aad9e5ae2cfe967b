"""The roles of the input columns, and the error every data problem raises. TensorFlow-free."""

import dataclasses
import re
from typing import Optional

_FEATURE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class DataError(ValueError):
    """The input data is unusable; the message names the file, and the line or column."""


@dataclasses.dataclass(frozen=True)
class Columns:
    """Which input columns hold what.

    Attributes:
      timestamp: ISO 8601 timestamps (with or without zone; without is read as UTC) or epoch seconds.
      target: The numeric value to forecast.
      series_id: Optional column naming the series of each row; without it the file is one series.
      covariates: Optional numeric columns whose histories go with each window.
    """

    timestamp: str = "timestamp"
    target: str = "value"
    series_id: Optional[str] = None
    covariates: tuple[str, ...] = ()

    def __post_init__(self):
        for column in self.covariates:
            if not _FEATURE_NAME.fullmatch(column):
                raise DataError(f"covariate column '{column}' must be letters, digits and _ (it names a feature)")
        used = [self.timestamp, self.target, *([self.series_id] if self.series_id else []), *self.covariates]
        if len(set(used)) != len(used):
            raise DataError(f"a column is given two roles: {used}")

    @property
    def all(self) -> list[str]:
        return [self.timestamp, self.target] + ([self.series_id] if self.series_id else []) + list(self.covariates)
