"""benchmarks.stretches: the accuracy benchmark's per-window figures pooled over the real test split and
backtest folds, against a hand computation on results written as benchmarks.accuracy writes them."""

import argparse
import io
import json
import os
import sys

import numpy as np
import pytest

from benchmarks import accuracy, stretches
from benchmarks import accuracy_metrics as am


def _result(rng: np.random.Generator, windows: int, mstl_scale: float, covered: float) -> dict:
    """One data set's entry of an accuracy.json: per-window MAEs and interval hits."""
    origins = (np.arange(windows) * 86400).tolist()
    model = rng.random(windows) + 0.5
    mstl = (rng.random(windows) + 0.5) * mstl_scale
    hits80 = (rng.random(windows) < covered).astype(float)
    return {"model_mae_over": {accuracy.MSTL: float(model.mean() / mstl.mean())},
            "scored_windows": {"origins": origins, "series": ["s"] * windows, "lags": 2,
                               "mae": {accuracy.MODEL: model.tolist(), accuracy.MSTL: mstl.tolist(),
                                       accuracy.AUTOTHETA: (mstl * 1.1).tolist()}},
            "intervals": {"windows": {"origins": origins, "series": ["s"] * windows, "lags": 2,
                                      "hits": {"80": hits80.tolist(), "95": np.ones(windows).tolist()}}}}


def _write(output_dir: str, cut: float, datasets: dict, failed: dict) -> None:
    directory = stretches.stretch_dir(output_dir, cut)
    os.makedirs(directory)
    with open(os.path.join(directory, accuracy.RESULTS_FILE), "w") as f:
        json.dump({"datasets": datasets, "failed": failed, "model_flags": [], "total_seconds": 1.0}, f)


def test_parse_cuts_takes_the_real_test_split_and_folds_and_names_a_bad_value():
    assert stretches.parse_cuts("0, 0.15,0.3") == [0.0, 0.15, 0.3]
    for text, named in (("0,x", "'x'"), ("0.5", "0.5"), ("0.15,0.15", "0.15"), ("", "at least one")):
        with pytest.raises(ValueError, match=named):
            stretches.parse_cuts(text)


def test_pooled_tables_and_json_against_a_hand_computation(tmp_path, capsys):
    rng = np.random.default_rng(0)
    first = {"hyndsight": _result(rng, 30, 1.0, 0.7), "gasoline": _result(rng, 20, 2.0, 0.9)}
    second = {"hyndsight": _result(rng, 12, 1.0, 0.6)}
    _write(str(tmp_path), 0, first, {})
    _write(str(tmp_path), 0.15, second, {"gasoline": "the pipeline failed"})

    assert stretches.main(["--output-dir", str(tmp_path), "--cuts", "0,0.15", "--pool-only"]) == 1
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])

    # gasoline failed on one cut: left out, and said so.
    assert summary["left_out"] == {"gasoline": [0.15]} and "left out: gasoline (no result at cut 0.15)" in out
    pooled = summary["datasets"]["hyndsight"]
    scored = [r["hyndsight"]["scored_windows"]["mae"] for r in (first, second)]
    model = np.concatenate([np.array(s[accuracy.MODEL]) for s in scored])
    mstl = np.concatenate([np.array(s[accuracy.MSTL]) for s in scored])
    ratio = model.mean() / mstl.mean()
    assert pooled["MSTL"]["estimate"] == pytest.approx(ratio, rel=1e-12)
    assert pooled["AutoTheta"]["estimate"] == pytest.approx(ratio / 1.1, rel=1e-9)
    se = am.pooled_mean_se([(np.array(s[accuracy.MODEL]) - ratio * np.array(s[accuracy.MSTL]), 2)
                            for s in scored]) / mstl.mean()
    assert pooled["MSTL"]["high"] == pytest.approx(ratio + am.Z_90 * se, rel=1e-9)
    assert pooled["per_cut"] == {"0": first["hyndsight"]["model_mae_over"]["MSTL"],
                                 "0.15": second["hyndsight"]["model_mae_over"]["MSTL"]}
    hits = np.concatenate([r["hyndsight"]["intervals"]["windows"]["hits"]["80"] for r in (first, second)])
    assert pooled["coverage"]["80"]["estimate"] == pytest.approx(hits.mean(), rel=1e-12)
    assert pooled["coverage"]["95"]["estimate"] == 1.0
    # The means over sets are of the pooled figures.
    assert summary["means"]["model_mae_over_mstl"] == pytest.approx(ratio, rel=1e-12)
    assert summary["means"]["coverage_error"] == pytest.approx((abs(hits.mean() - 0.8) + 0.05) / 2, rel=1e-9)
    assert f"hyndsight  {first['hyndsight']['model_mae_over']['MSTL']:.3f}" in out


def test_a_cut_not_run_is_one_line_naming_its_file(tmp_path, capsys):
    _write(str(tmp_path), 0, {}, {})
    assert stretches.main(["--output-dir", str(tmp_path), "--cuts", "0,0.3", "--pool-only"]) == 2
    error = capsys.readouterr().err.strip()
    assert error == (f"{tmp_path}/cut-0.3/{accuracy.RESULTS_FILE}: no results of cut 0.3 "
                     "(run without --pool-only first)")


# A stand-in for benchmarks.accuracy's command line (the real one runs seven pipelines a cut): it
# writes the cut's results and tables where the real one would, after a pause long enough to see
# whether two cuts overlap.
_CHILD = """
import json, os, sys, time
args = sys.argv[1:]
directory = args[args.index("--output-dir") + 1]
start = time.time()
time.sleep(1.0)
print("tables of", directory)
print("progress of", directory, file=sys.stderr)
with open(os.path.join(directory, "accuracy.json"), "w") as f:
    json.dump({"argv": args, "start": start, "end": time.time()}, f)
sys.exit(3 if "--backtest-cut" in args and args[args.index("--backtest-cut") + 1] == "0.3" else 0)
"""


def test_parallel_cuts_overlap_and_each_writes_its_own_directory(tmp_path, monkeypatch):
    terminal = io.StringIO()
    monkeypatch.setattr(accuracy, "_terminal", terminal)
    args = argparse.Namespace(max_origins=40, model_flags="--seed 1", datasets="hyndsight", keep=False)
    codes = stretches.run_stretches_in_parallel([0.0, 0.15, 0.3], str(tmp_path), args, jobs=2,
                                                command=(sys.executable, "-c", _CHILD))
    assert codes == {0.0: 0, 0.15: 0, 0.3: 3}
    runs = {}
    for cut in (0.0, 0.15, 0.3):
        directory = stretches.stretch_dir(str(tmp_path), cut)
        with open(os.path.join(directory, accuracy.RESULTS_FILE)) as f:
            runs[cut] = json.load(f)
        assert runs[cut]["argv"] == stretches.accuracy_argv(cut, str(tmp_path), args)
        with open(os.path.join(directory, stretches.TABLES_FILE)) as f:
            assert f.read() == f"tables of {directory}\n"
        with open(os.path.join(directory, stretches.PROGRESS_FILE)) as f:
            assert f.read() == f"progress of {directory}\n"
    # Two at a time: the first two overlap, the third starts only when one of them has ended.
    assert runs[0.0]["start"] < runs[0.15]["end"] and runs[0.15]["start"] < runs[0.0]["end"]
    assert runs[0.3]["start"] >= min(runs[0.0]["end"], runs[0.15]["end"]) - 0.05
    err = terminal.getvalue()
    assert "cut 0.3: done in" in err and "exit code 3" in err and err.count("started") == 3


def test_the_arguments_of_a_cut_name_its_directory_fold_and_flags(tmp_path):
    args = argparse.Namespace(max_origins=12, model_flags="--seed 1", datasets="", keep=True)
    assert stretches.accuracy_argv(0.15, "/out", args) == [
        "--output-dir", "/out/cut-0.15", "--max-origins", "12", "--model-flags=--seed 1", "--backtest-cut", "0.15",
        "--keep"]
    assert stretches.accuracy_argv(0.0, "/out", args)[:2] == ["--output-dir", "/out/cut-0"]
    assert "--backtest-cut" not in stretches.accuracy_argv(0.0, "/out", args)


def test_jobs_below_one_is_refused_naming_the_flag(tmp_path, capsys):
    with pytest.raises(SystemExit):
        stretches.main(["--output-dir", str(tmp_path), "--jobs", "0"])
    assert "--jobs must be at least 1; got 0" in capsys.readouterr().err
