"""The settings survive the JSON trip to the Trainer's custom_config unchanged."""

import json

import pytest

from pipeline import config as config_lib


def test_trainer_settings_round_trip_through_json():
    config = config_lib.PipelineConfig(
        data=config_lib.DataConfig(path="series.csv"), output_dir="out",
        windows=config_lib.WindowConfig(history=8, horizon=2, split_fractions=(0.5, 0.3)),
        model=config_lib.ModelConfig(lstm_units=(32, 16, 8), dropout=0.1, scaling="global"),
        evaluation=config_lib.EvaluationConfig(season_length=4))
    custom_config = json.loads(json.dumps(config.trainer_config()))
    assert config_lib.model_config_from_custom_config(custom_config) == config.model
    assert config_lib.window_config_from_custom_config(custom_config) == config.windows


def test_the_whole_config_round_trips_through_json():
    config = config_lib.PipelineConfig(
        data=config_lib.DataConfig(path="s.csv", covariate_columns=("a", "b")), output_dir="out",
        windows=config_lib.WindowConfig(history=12, split_times=("2020-01-01", "2021-01-01")),
        evaluation=config_lib.EvaluationConfig(season_length=12, max_skill=0.9, regression_tolerance=0.0))
    assert config_lib.from_json(config.to_json()) == config


@pytest.mark.parametrize("season", [0, 53])
def test_a_season_longer_than_the_history_is_refused_before_anything_runs(season):
    with pytest.raises(config_lib.ConfigError, match=f"season length {season} must be between 1 and the "
                                                      "history length 52"):
        config_lib.PipelineConfig(data=config_lib.DataConfig(path="s.csv"), output_dir="out",
                                  evaluation=config_lib.EvaluationConfig(season_length=season))


def test_windows_accepts_a_short_history_without_a_season_length():
    from pipeline import cli
    args = cli.build_parser().parse_args(["windows", "--data", "s.csv", "--output", "o", "--history", "8"])
    assert cli.pipeline_config_from_flags(args).evaluation.season_length == 8


def test_missing_custom_config_gives_the_defaults():
    assert config_lib.model_config_from_custom_config(None) == config_lib.ModelConfig()
    assert config_lib.window_config_from_custom_config({}) == config_lib.WindowConfig()


def test_serve_flag_defaults_are_the_server_defaults():
    from pipeline import cli
    from serving import dataplane
    defaults = dataplane.BatchingOptions()
    assert cli.serve_batching_defaults() == {"max_batch_size": defaults.max_batch_size,
                                             "batch_timeout_micros": int(defaults.batch_timeout_s * 1e6),
                                             "num_batch_threads": defaults.num_batch_threads}
