"""benchmarks.stretches: the accuracy benchmark's per-window figures pooled over the real test split and
backtest folds, against a hand computation on results written as benchmarks.accuracy writes them."""

import json
import os

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
