"""The settings survive the JSON trip to the Trainer's custom_config unchanged."""

import json

from pipeline import config as config_lib


def test_trainer_settings_round_trip_through_json():
    config = config_lib.PipelineConfig(
        data=config_lib.DataConfig(path="series.csv"), output_dir="out",
        windows=config_lib.WindowConfig(history=8, horizon=2, split_fractions=(0.5, 0.3)),
        model=config_lib.ModelConfig(lstm_units=(32, 16, 8), dropout=0.1, scaling="global"))
    custom_config = json.loads(json.dumps(config.trainer_config()))
    assert config_lib.model_config_from_custom_config(custom_config) == config.model
    assert config_lib.window_config_from_custom_config(custom_config) == config.windows


def test_missing_custom_config_gives_the_defaults():
    assert config_lib.model_config_from_custom_config(None) == config_lib.ModelConfig()
    assert config_lib.window_config_from_custom_config({}) == config_lib.WindowConfig()


def test_serve_flag_defaults_are_the_server_defaults():
    from pipeline import cli
    from serving import server
    defaults = server.BatchingOptions()
    assert cli.serve_batching_defaults() == {"max_batch_size": defaults.max_batch_size,
                                             "batch_timeout_micros": int(defaults.batch_timeout_s * 1e6),
                                             "num_batch_threads": defaults.num_batch_threads}
