"""Exports the bundled data set, data/co2_weekly_mlo.csv, from statsmodels' copy (run once).

The file is committed; this script records how it was made. It needs statsmodels, which the
project does not depend on: `python -m venv /tmp/sm && /tmp/sm/bin/pip install statsmodels pandas`,
then `/tmp/sm/bin/python tools/export_co2_data.py data/co2_weekly_mlo.csv`.
"""

import sys

import statsmodels.datasets.co2 as co2


def main(path: str) -> None:
    frame = co2.load_pandas().data
    frame.index.name = "timestamp"
    frame = frame.rename(columns={"co2": "value"})
    # Missing weeks stay as rows with an empty value: handling them is the product's job.
    frame.to_csv(path, date_format="%Y-%m-%d", float_format="%.1f")


if __name__ == "__main__":
    main(sys.argv[1])
