"""The settings: checked when built (naming the flag), resolved from the data's frequency and length,
built from the command line, and unchanged by the JSON trip to the components."""

import dataclasses
import json
import re

import numpy as np
import pytest

from components import settings, trainer_options
from components.example_gen import options
from pipeline import cli
from pipeline import config as config_lib
from tests.conftest import DATA


def _pipeline(**values) -> config_lib.PipelineConfig:
    return config_lib.PipelineConfig(**{"data": config_lib.DataConfig(path="s.csv"), "output_dir": "out", **values})


# The JSON trip.

def test_trainer_settings_round_trip_through_json():
    config = _pipeline(
        windows=config_lib.WindowConfig(history=8, horizon=2, seasonal_periods=(4, 12), split_fractions=(0.5, 0.3),
                                        step_seconds=3600.0),
        model=config_lib.ModelConfig(lstm_units=(32, 16, 8), dropout=0.1, scaling="global"))
    custom_config = json.loads(json.dumps(config.trainer_config()))
    assert trainer_options.model_config_from_dict(custom_config["model"]) == config.model
    assert settings.from_dict(config_lib.WindowConfig, custom_config["windows"]) == config.windows


def test_the_whole_config_round_trips_through_json():
    config = _pipeline(
        data=config_lib.DataConfig(path="s.csv", covariate_columns=("a", "b"), future_covariate_columns=("c",)),
        windows=config_lib.WindowConfig(history=12, seasonal_periods=(7, 365), split_times=("2020-01-01", "2021-01-01"),
                                        split_scope="per_series", seasonal_lags=False),
        evaluation=config_lib.EvaluationConfig(max_skill=0.9, regression_tolerance=0.0),
        beam_options=("a=1",), enable_cache=False)
    assert config_lib.from_json(config.to_json()) == config


def test_missing_custom_config_gives_the_defaults():
    assert trainer_options.model_config_from_dict(None) == config_lib.ModelConfig()
    assert trainer_options.model_config_from_dict({}) == config_lib.ModelConfig()


def test_the_defaults():
    model = config_lib.ModelConfig()
    assert (model.scaling, model.loss, model.epochs, model.early_stopping_patience) == ("window_std", "mae", 100, 5)
    assert trainer_options.LOSSES == ("mse", "huber", "mae") and "window_std" in trainer_options.SCALINGS
    windows = config_lib.WindowConfig()
    assert (windows.history, windows.seasonal_periods, windows.split_scope) == (None, (), "global")
    assert windows.seasonal_lags and windows.calendar_features and not windows.resolved


# Settings refused when built, naming the flag.

@pytest.mark.parametrize("build, message", [
    (lambda: _pipeline(keep_versions=0), "--keep-versions must be at least 1; got 0"),
    (lambda: config_lib.ModelConfig(batch_size=0), "--batch-size must be at least 1; got 0"),
    (lambda: config_lib.ModelConfig(epochs=0), "--epochs must be at least 1; got 0"),
    (lambda: config_lib.DataConfig(path="", gap_policy="x"),
     "--gap-policy must be one of error, interpolate, skip; got 'x'"),
    (lambda: config_lib.WindowConfig(seasonal_periods=(1,)), "--season-length must be at least 2; got 1"),
    (lambda: config_lib.WindowConfig(seasonal_periods=(12, 1)), "--season-length must be at least 2; got 1"),
    (lambda: config_lib.WindowConfig(history=0), "--history must be at least 1; got 0"),
    (lambda: config_lib.WindowConfig(split_scope="each"), "--split-scope must be one of global, per_series"),
    (lambda: config_lib.WindowConfig(split_fractions=(0.9, 0.2)), "--split-fractions need 2 positive split fractions"),
    (lambda: config_lib.WindowConfig(split_times=("2021-01-01", "2020-01-01")),
     "--split-times must be two increasing timestamps"),
    (lambda: config_lib.WindowConfig(split_times=("soon", "later")), "--split-times must be ISO 8601 timestamps"),
    (lambda: config_lib.DataConfig(path="", frequency="fortnightly"), "--frequency unknown frequency 'fortnightly'"),
    (lambda: config_lib.DataConfig(path="", max_gap=0), "--max-gap must be at least 1; got 0"),
    (lambda: config_lib.ModelConfig(lstm_units=()), "--lstm-units needs at least one layer"),
    (lambda: config_lib.ModelConfig(lstm_units=(8, 0)), "--lstm-units must be at least 1; got 0"),
    (lambda: config_lib.ModelConfig(dropout=0.95), "--dropout must be at most 0.9; got 0.95"),
    (lambda: config_lib.ModelConfig(learning_rate=0.0), "--learning-rate must be above 0; got 0"),
    (lambda: config_lib.ModelConfig(loss="quantile"), "--loss must be one of mse, huber, mae; got 'quantile'"),
    (lambda: config_lib.EvaluationConfig(max_skill=0), "--max-skill must be above 0; got 0"),
    (lambda: _pipeline(beam_direct_running_mode="threads"), "--beam-mode must be one of in_memory, multi_processing"),
    (lambda: _pipeline(beam_preset="dataflow", beam_options=("project=p",)),
     "--beam-preset dataflow needs --beam-option region=... temp_location=..."),
    (lambda: _pipeline(beam_options=("project",)), "--beam-option must be KEY=VALUE, got project"),
])
def test_a_bad_setting_is_refused_when_built_naming_its_flag(build, message):
    with pytest.raises(config_lib.ConfigError, match="^" + re.escape(message)):
        build()


def test_config_errors_are_value_errors_of_one_class():
    assert config_lib.ConfigError is settings.ConfigError and issubclass(settings.ConfigError, ValueError)
    assert not hasattr(options, "OptionsError")


def test_windowing_options_need_resolved_windows():
    with pytest.raises(config_lib.ConfigError, match="resolved"):
        options.WindowingOptions(config_lib.DataConfig(path=""), config_lib.WindowConfig())


def _main(argv, capsys) -> tuple[int, str]:
    try:
        code = cli.main(argv)
    except SystemExit as exit_:  # argparse refuses a bad choice or type itself
        code = exit_.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("flags, code, message", [
    (["--keep-versions", "0"], 1, "error: --keep-versions must be at least 1; got 0"),
    (["--batch-size", "0"], 1, "error: --batch-size must be at least 1; got 0"),
    (["--epochs", "0"], 1, "error: --epochs must be at least 1; got 0"),
    (["--season-length", "12,1"], 1, "error: --season-length must be at least 2; got 1"),
    (["--split-fractions", "0.9,0.2"], 1, "error: --split-fractions need 2 positive"),
    (["--beam-preset", "dataflow"], 1,
     "error: --beam-preset dataflow needs --beam-option project=... region=... temp_location=..."),
    (["--gap-policy", "x"], 2, "argument --gap-policy: invalid choice: 'x'"),
    (["--epochs", "two"], 2, "argument --epochs: invalid int value: 'two'"),
    (["--season-length", "4,x"], 2, "argument --season-length: invalid"),
], ids=["keep-versions", "batch-size", "epochs", "season-length", "split-fractions", "beam-preset",
        "argparse-choice", "argparse-int", "argparse-list"])
def test_the_command_refuses_a_bad_flag_before_it_creates_anything(tmp_path, capsys, flags, code, message):
    output = tmp_path / "run"
    got, err = _main(["run", "--data", str(tmp_path / "none.csv"), "--output", str(output), *flags], capsys)
    assert got == code and message in err, err
    assert not output.exists()


# Flags to settings.

def test_flags_become_the_unresolved_config():
    args = cli.build_parser().parse_args([
        "run", "--data", "s.csv", "--output", "o", "--season-length", "4,12", "--no-cache", "--no-seasonal-lags",
        "--no-calendar-features", "--split-scope", "per_series", "--future-covariate-columns", "promo,price",
        "--covariate-columns", "temp", "--horizon", "6", "--beam-option", "a=1", "--beam-option", "b=2"])
    config = cli.pipeline_config_from_flags(args)
    assert config.data.path.endswith("/s.csv") and config.output_dir.endswith("/o")
    assert config.data.future_covariate_columns == ("promo", "price") and config.data.covariate_columns == ("temp",)
    windows = config.windows
    assert (windows.history, windows.seasonal_periods, windows.horizon, windows.step_seconds) == (None, (4, 12), 6, 0)
    assert not windows.seasonal_lags and not windows.calendar_features and windows.split_scope == "per_series"
    assert not config.enable_cache and config.beam_options == ("a=1", "b=2")


def test_a_remote_data_path_stays_as_given():
    args = cli.build_parser().parse_args(["windows", "--data", "gs://b/s.csv", "--output", "gs://b/run"])
    config = cli.pipeline_config_from_flags(args)
    assert (config.data.path, config.output_dir) == ("gs://b/s.csv", "gs://b/run")


def test_the_command_resolves_the_windows_from_the_data(tmp_path, capsys):
    path = tmp_path / "s.csv"
    path.write_text("timestamp,value\n" + "".join(f"2024-01-{d + 1:02d},{d}\n" for d in range(30)))
    args = cli.build_parser().parse_args(["windows", "--data", str(path), "--output", str(tmp_path / "o")])
    config = cli._resolved_config(args)
    # Daily: the week and the year; 30 points hold 3 weeks but not 3 years. Two weeks of history.
    assert (config.windows.seasonal_periods, config.windows.history, config.windows.step_seconds) == ((7,), 14, 86400)
    assert "history 14, horizon 4, seasonal periods 7 (context 14)" in capsys.readouterr().out
    # A history given stays.
    args = cli.build_parser().parse_args(["windows", "--data", str(path), "--output", "o", "--history", "5"])
    assert cli._resolved_config(args).windows.history == 5


def test_run_help_shows_every_default(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for shown in ("--horizon HORIZON forecast steps H (default: 4)", "(default: window_std)",
                  "--epochs EPOCHS most epochs; early stopping usually ends training sooner (default: 100)",
                  "newest pushed versions kept under the serving directory (default: 5)",
                  "--cache, --no-cache", "(default: global)"):
        assert shown in text, shown


def test_serve_flag_defaults_are_the_server_defaults():
    from serving import dataplane
    defaults = dataplane.BatchingOptions()
    assert cli.serve_batching_defaults() == {"max_batch_size": defaults.max_batch_size,
                                             "batch_timeout_micros": int(defaults.batch_timeout_s * 1e6),
                                             "num_batch_threads": defaults.num_batch_threads}


# Resolving against the data.

@pytest.mark.parametrize("frequency, periods", [
    ("30min", (48, 336)), ("h", (24, 168)), ("2h", (12, 84)), ("D", (7, 365)), ("W-SAT", (52,)), ("2W-SUN", (26,)),
    ("MS", (12,)), ("ME", (12,)), ("QS", (4,)), ("B", (5,)), ("YS", ()),
])
def test_natural_periods_of_a_frequency(frequency, periods):
    assert options.natural_periods(frequency) == periods


@pytest.mark.parametrize("periods, horizon, history", [
    ((24, 168), 4, 48),  # two days of hours
    ((7, 365), 4, 14),  # two weeks of days
    ((26,), 4, 52),  # up to 26 steps, two seasons
    ((48, 336), 4, 48),  # a longer season: one
    ((52,), 4, 52),
    ((4,), 4, 8),  # at least 2H
    ((4,), 2, 8),  # at least 8
    ((), 10, 20),
    ((), 1, 8),
])
def test_default_history(periods, horizon, history):
    assert options.default_history(periods, horizon) == history


def test_resolve_keeps_the_periods_the_data_holds_three_cycles_of():
    windows = config_lib.WindowConfig(horizon=4)
    # The context: the history, the longest season, and 12 weeks where a quarter of the series holds them.
    for points, periods, history, context in ((20, (), 8, 8), (21, (7,), 14, 14), (1094, (7,), 14, 84),
                                              (1095, (7, 365), 14, 365)):
        resolved = options.resolve(windows, "D", points)
        assert (resolved.seasonal_periods, resolved.history, resolved.step_seconds) == (periods, history, 86400)
        assert resolved.context == context and resolved.resolved
    weekly = options.resolve(windows, "W-SAT", 700)
    assert (weekly.seasonal_periods, weekly.history, weekly.context, weekly.step_seconds) == ((52,), 52, 156, 604800)
    assert weekly.seasonal_cycles == 3  # a quarter of 700 weeks holds 3 years
    monthly = options.resolve(windows, "MS", 120)
    assert monthly.step_seconds == pytest.approx(31_556_952 / 12, rel=1e-3)


def test_resolve_keeps_what_was_given():
    windows = config_lib.WindowConfig(history=5, seasonal_periods=(400,), horizon=3)
    resolved = options.resolve(windows, "D", 30)
    assert (resolved.history, resolved.seasonal_periods, resolved.context) == (5, (400,), 400)


def test_a_pipeline_config_resolves_against_its_data(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("timestamp,value\n" + "".join(f"2024-01-01T{h:02d}:00:00Z,{h}\n" for h in range(24))
                    + "".join(f"2024-01-{2 + d // 24:02d}T{d % 24:02d}:00:00Z,{d}\n" for d in range(24 * 6)))
    config = config_lib.PipelineConfig(data=config_lib.DataConfig(path=str(path)), output_dir="out")
    resolved = config_lib.resolve_from_data(config)
    # 168 hourly points: 7 days but not 3 weeks.
    assert (resolved.windows.seasonal_periods, resolved.windows.history, resolved.windows.step_seconds) == (
        (24,), 48, 3600)
    assert config_lib.resolve_from_data(resolved) == resolved
    assert config_lib.resolve(config, "h", 168) == resolved
    # A quarter of 168 points holds one day: a context of max(L, 24) = 48.
    assert (resolved.windows.seasonal_cycles, resolved.windows.context) == (1, 48)
    # Frequency, history and seasons all given: nothing is read, the context's cycles stay as given.
    given = dataclasses.replace(config, data=dataclasses.replace(config.data, path=str(tmp_path / "absent.csv"),
                                                                 frequency="h"),
                                windows=config_lib.WindowConfig(history=8, seasonal_periods=(24,), seasonal_cycles=3))
    assert config_lib.resolve_from_data(given).windows.context == 72


def test_every_setting_of_a_run_has_its_flag():
    run = cli.build_parser()._subparsers._group_actions[0].choices["run"]
    dests = {action.dest for action in run._actions}
    # Filled in from the data, or named by the runner: no flag.
    internal = {"step_seconds", "pipeline_name", "data", "windows", "model", "evaluation"}
    for cls in (config_lib.DataConfig, config_lib.WindowConfig, config_lib.ModelConfig, config_lib.EvaluationConfig,
                config_lib.PipelineConfig):
        missing = {f.name for f in dataclasses.fields(cls)} - internal - dests
        assert not missing, f"{cls.__name__} settings without a flag: {sorted(missing)}"


def test_the_context_holds_the_cycles_of_the_primary_season_that_a_quarter_of_a_series_holds():
    assert options.context_cycles(5, (12,), 500) == 5
    assert options.context_cycles(5, (4,), 76) == 4  # 19 points: 4 quarters, 4 times
    assert options.context_cycles(5, (12,), 40) == 1  # never fewer than one
    assert options.context_cycles(5, (24, 168), 8760) == 5  # the primary (shortest) season counts
    assert options.context_cycles(3, (), 100) == 3
    # Without seasonal lags the context does not reach further back than the longest season.
    lags = config_lib.WindowConfig(history=8, seasonal_periods=(4, 12), seasonal_cycles=5)
    assert lags.context == 20
    assert dataclasses.replace(lags, seasonal_lags=False).context == 12


def test_gaps_keep_the_context_short_enough_to_keep_nine_tenths_of_the_windows():
    # 200 points, L = 8, H = 2, season 4: one cycle's windows need 10 present points.
    windows = config_lib.WindowConfig(history=8, horizon=2, seasonal_periods=(4,), seasonal_cycles=5)
    missing = np.zeros(200, bool)
    assert options.gap_tolerant_cycles(windows, missing) == 5  # no gap: no window lost
    # A gap every 25 points: one cycle keeps 200 - 9 - 8 * 10 = 111 windows (counted by hand below),
    # five cycles (C = 20, spans of 22) keep 200 - 21 - 8 * 22 = 3: the context keeps the most
    # cycles that keep 90% of 111.
    missing[12::25] = True

    def count(span: int) -> int:
        return sum(not missing[f:f + span].any() for f in range(200 - span + 1))

    assert count(10) == 111
    kept = [k for k in range(1, 6) if count(max(8, 4 * k) + 2) >= 0.9 * count(10)]
    assert options.gap_tolerant_cycles(windows, missing) == max(kept) == 2
    assert options.gap_tolerant_cycles(dataclasses.replace(windows, seasonal_cycles=1), missing) == 1
    assert options.gap_tolerant_cycles(dataclasses.replace(windows, seasonal_periods=()), missing) == 5
    # Without seasonal lags the cycles do not lengthen the context: no window is lost to them.
    assert options.gap_tolerant_cycles(dataclasses.replace(windows, seasonal_lags=False), missing) == 5


def test_the_bundled_co2_keeps_one_cycle_of_context_with_its_gaps_and_two_once_interpolated():
    data = config_lib.DataConfig(path=DATA)
    resolved = config_lib.resolve_from_data(config_lib.PipelineConfig(data=data, output_dir="out"))
    assert (resolved.windows.seasonal_cycles, resolved.windows.context) == (1, 52)
    interpolated = config_lib.resolve_from_data(config_lib.PipelineConfig(
        data=dataclasses.replace(data, gap_policy="interpolate"), output_dir="out"))
    # Runs of more than 3 missing weeks (--max-gap) stay: over the whole series, two cycles keep
    # 1,909 windows of one cycle's 2,065 (above 90%), three 1,753 (below).
    assert (interpolated.windows.seasonal_cycles, interpolated.windows.context) == (2, 104)
