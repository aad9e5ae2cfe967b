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
