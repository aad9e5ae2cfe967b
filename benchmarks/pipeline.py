"""Benchmark of a whole pipeline run: wall time and seconds per component, fresh and cached.

Runs the pipeline on the bundled data with the demo's settings into a new directory, then twice
again with nothing changed, and prints the three, per component, as a table and a JSON line, with
the time the run's report takes after each. The second run reuses every component but the
Evaluator, whose baseline input is now the first run's blessed model; the third reuses all.
Goals on 2 cores: a full run under 120 s, a re-run under 20 s.

Usage:
  tools/in-env python -m benchmarks.pipeline [--data data/co2_weekly_mlo.csv]
"""

import argparse
import dataclasses
import json
import os
import tempfile
import time

from pipeline import config as config_lib
from pipeline import local_runner
from pipeline import report as report_lib

# The second run re-runs the Evaluator alone: its baseline input is now the first run's blessed
# model (compared with itself). From the third run on, every component is cached.
RUNS = ("fresh", "second", "third")
GOALS_S = {"fresh": 120.0, "second": 20.0, "third": 20.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join("data", "co2_weekly_mlo.csv"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as output:
        config = config_lib.resolve_from_data(config_lib.PipelineConfig(
            data=config_lib.DataConfig(path=os.path.abspath(args.data)), output_dir=output))
        runs, report_s = {}, {}
        for kind in RUNS:
            runs[kind] = local_runner.run(config)
            started = time.perf_counter()
            report_lib.make(config, runs[kind])
            report_s[kind] = time.perf_counter() - started
    names = [c.name for c in runs["fresh"].components]
    print(f"{'component':<22} " + " ".join(f"{k + ' s':>10} {k + ' state':>14}" for k in runs))
    for i, name in enumerate(names):
        print(f"{name:<22} " + " ".join(f"{r.components[i].seconds:>10.1f} {r.components[i].state:>14}"
                                        for r in runs.values()))
    print(f"{'pipeline wall':<22} " + " ".join(f"{r.seconds:>10.1f} {'goal < ' + str(int(GOALS_S[k])):>14}"
                                               for k, r in runs.items()))
    print(f"{'report (after)':<22} " + " ".join(f"{report_s[k]:>10.1f} {'':>14}" for k in runs))
    ratios = {k: runs[k].seconds / runs["fresh"].seconds for k in RUNS[1:]}
    print("re-run / fresh: " + ", ".join(f"{k} {r:.3f}" for k, r in ratios.items()))
    print(json.dumps({"benchmark": "pipeline", "data": args.data, "goals_s": GOALS_S, "ratio_to_fresh": ratios,
                      "runs": {k: {"seconds": r.seconds, "report_seconds": report_s[k],
                                  "components": [dataclasses.asdict(c) for c in r.components]}
                               for k, r in runs.items()}}))


if __name__ == "__main__":
    main()
