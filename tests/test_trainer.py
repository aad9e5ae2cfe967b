"""The Trainer module's functions on real transformed windows read through the TFX data accessor."""

import csv
import dataclasses
import glob
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx

from components import features, quantiles, windowing
from components import trainer as trainer_lib
from components import transform as transform_lib
from pipeline import cli, local_runner
from pipeline import config as config_lib
from pipeline import pipeline as pipeline_lib
from serving import contract, repository
from tests import conftest

TINY = config_lib.ModelConfig(scaling="per_series", lstm_units=(4,), epochs=2, batch_size=16,
                              early_stopping_patience=0, seed=7)


def _train(out_dir: str, model_config: config_lib.ModelConfig) -> keras.Model:
    return trainer_lib.train(
        conftest.transformed_files(out_dir, "train"), conftest.transformed_files(out_dir, "eval"),
        conftest.data_accessor(out_dir), tft.TFTransformOutput(os.path.join(out_dir, "transform_graph")),
        conftest.UNIT_HISTORY, conftest.UNIT_HORIZON, model_config)


def test_two_trainings_with_one_seed_give_the_same_weights(covariate_transform):
    out, _ = covariate_transform
    first, second = _train(out, TINY), _train(out, TINY)
    other_seed = _train(out, config_lib.ModelConfig(**{**TINY.__dict__, "seed": 8}))
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first.get_weights(), other_seed.get_weights()))


def test_fit_reports_early_stoppings_best_epoch_and_the_refit_trains_that_many_on_both_splits(covariate_transform,
                                                                                               tmp_path):
    out, splits = covariate_transform
    train, evaluation, args = conftest.fit_inputs(out)
    # A learning rate high enough that the eval loss turns up within the epochs, so stopping matters.
    stopping = dataclasses.replace(TINY, epochs=12, early_stopping_patience=2, learning_rate=0.05)
    a = trainer_lib.fit(train, evaluation, *args, stopping, log_dir=str(tmp_path))
    with open(tmp_path / trainer_lib.TRAINING_LOG_FILE) as f:
        val_loss = [float(row["val_loss"]) for row in csv.DictReader(f)]
    assert a.epochs_run == len(val_loss) and a.epochs == int(np.argmin(val_loss)) + 1
    assert a.windows == len(splits["train"])
    b = trainer_lib.fit(train + evaluation, None, *args, trainer_lib.refit_config(stopping, a.epochs, a.base_mix_fit))
    assert b.epochs == b.epochs_run == a.epochs
    assert b.windows == len(splits["train"]) + len(splits["eval"])


def test_input_pipeline_reshuffles_every_epoch_and_keeps_every_window(covariate_transform):
    out, splits = covariate_transform
    tft_output = tft.TFTransformOutput(os.path.join(out, "transform_graph"))
    dataset = trainer_lib.make_dataset(conftest.transformed_files(out, "train"), conftest.data_accessor(out),
                                       tft_output, batch_size=16, shuffle=True, seed=1)
    epochs = [np.concatenate([x[features.HISTORY_SCALED].numpy() for x, _ in dataset]) for _ in range(2)]
    assert len(epochs[0]) == len(splits["train"])
    assert not np.array_equal(epochs[0], epochs[1])
    np.testing.assert_array_equal(np.sort(epochs[0], axis=0), np.sort(epochs[1], axis=0))
    features_, _ = next(iter(dataset))
    assert set(features_) == set(trainer_lib.model_inputs(tft_output))


def test_the_model_reads_the_sequence_inputs_then_the_future_ones(covariate_transform):
    out, _ = covariate_transform
    inputs = trainer_lib.model_inputs(tft.TFTransformOutput(os.path.join(out, "transform_graph")))
    L, H, M = conftest.UNIT_HISTORY, conftest.UNIT_HORIZON, conftest.UNIT_PERIOD  # noqa: N806
    # Hourly: 3 calendar cycles, sin and cos of each, at every step. One value a step for the rest.
    scaled = transform_lib.scaled_feature
    assert list(inputs.items()) == [
        (features.HISTORY_SCALED, L), (features.CALENDAR_HISTORY, L * 6), (scaled(conftest.FUTURE_HISTORY), L),
        (scaled(conftest.COVARIATE), L),
        # The smoothed seasonal forecasts of the primary period, then the calendar of the target steps.
        *((scaled(features.base_feature(k)), H) for k in sorted(features.SEASONAL_BASES)),
        (features.CALENDAR_FUTURE, H * 6),
        (scaled(f"{conftest.FUTURE}_{features.lag_feature(M)}"), H), (scaled(conftest.FUTURE), H),
        (scaled(features.lag_feature(M)), H)]


def test_model_follows_the_config():
    model_config = config_lib.ModelConfig(lstm_units=(8, 6, 4), dropout=0.3, recurrent_dropout=0.1, loss="huber",
                                          learning_rate=0.01, quantiles=())
    covariate = transform_lib.scaled_feature(conftest.COVARIATE)
    lag = transform_lib.scaled_feature(features.lag_feature(7))
    spec = {features.HISTORY_SCALED: 12, covariate: 12, features.CALENDAR_HISTORY: 12 * 4, lag: 3,
            features.CALENDAR_FUTURE: 3 * 4}
    model = trainer_lib.build_model(spec, 12, 3, model_config)
    lstms = [layer for layer in model.layers if isinstance(layer, keras.layers.LSTM)]
    assert [layer.units for layer in lstms] == [8, 6, 4]
    assert all(layer.cell.recurrent_dropout == 0.1 for layer in lstms)
    # The sequence inputs are channels of one [L, channels] sequence: history, covariate, 4 calendar values.
    assert lstms[0].input.shape == (None, 12, 6)
    # The future inputs join the last LSTM state: 4 units, 3 lags and 12 calendar values.
    assert model.get_layer("state_and_future").output.shape == (None, 4 + 3 + 12)
    # Dropout after each LSTM layer and in the head.
    assert [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)] == [0.3] * 4
    assert isinstance(model.loss, keras.losses.Huber)
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.01)
    assert model.output_shape == (None, 3)
    assert set(model.input) == set(spec)
    plain = trainer_lib.build_model({features.HISTORY_SCALED: 12}, 12, 3,
                                    config_lib.ModelConfig(lstm_units=(4,), quantiles=()))
    assert plain.loss == "mae" and [layer.name for layer in plain.layers if "future" in layer.name] == []
    # The default, conformal intervals, keeps the point model and its loss.
    default = trainer_lib.build_model(spec, 12, 3, dataclasses.replace(model_config, quantiles=(0.1, 0.5, 0.9)))
    assert isinstance(default.loss, keras.losses.Huber) and default.output_shape == (None, 3)
    # A quantile head's loss is the pinball loss, whatever --loss says, over [H, Q] outputs.
    levels = (0.1, 0.5, 0.9)
    quantile = trainer_lib.build_model(spec, 12, 3, dataclasses.replace(model_config, quantiles=levels,
                                                                        interval_method="quantile_head"))
    assert isinstance(quantile.loss, trainer_lib.PinballLoss) and quantile.loss.levels == levels
    assert quantile.output_shape == (None, 3, 3)


def test_with_a_seasonal_base_an_untrained_model_is_the_seasonal_naive_forecast():
    lag_7, lag_28 = (transform_lib.scaled_feature(features.lag_feature(m)) for m in (7, 28))
    spec = {features.HISTORY_SCALED: 14, lag_28: 3, lag_7: 3}
    rng = np.random.default_rng(0)
    inputs = {name: rng.normal(size=(5, width)).astype(np.float32) for name, width in spec.items()}
    point = trainer_lib.build_model(spec, 14, 3, config_lib.ModelConfig(lstm_units=(4,), seasonal_base=True,
                                                                        quantiles=()))
    # The primary (shortest) season's lags, whatever the order of the inputs.
    np.testing.assert_allclose(point(inputs, training=False).numpy(), inputs[lag_7], atol=1e-6)
    # A quantile model's median is that forecast, the other quantiles around it.
    model = trainer_lib.build_model(spec, 14, 3, config_lib.ModelConfig(lstm_units=(4,), seasonal_base=True,
                                                                        interval_method="quantile_head"))
    quantiles = model(inputs, training=False).numpy()
    median = config_lib.ModelConfig().quantiles.index(0.5)
    np.testing.assert_allclose(quantiles[..., median], inputs[lag_7], atol=1e-6)
    assert (quantiles[..., :median] < inputs[lag_7][..., None]).all()


def test_the_seasonal_base_is_a_learnt_mean_of_the_naive_and_smoothed_forecasts():
    lag = transform_lib.scaled_feature(features.lag_feature(7))
    bases = [transform_lib.scaled_feature(features.base_feature(k)) for k in features.SEASONAL_BASES]
    spec = {features.HISTORY_SCALED: 14, lag: 3, **dict.fromkeys(bases, 3)}
    rng = np.random.default_rng(1)
    inputs = {name: rng.normal(size=(5, width)).astype(np.float32) for name, width in spec.items()}
    config = config_lib.ModelConfig(lstm_units=(4,), quantiles=())
    model = trainer_lib.build_model(spec, 14, 3, config)
    # Untrained: equal weights, so the mean of the seasonal naive forecast and the three smoothed ones.
    candidates = np.stack([inputs[lag], *(inputs[b] for b in bases)], axis=-1)
    np.testing.assert_allclose(model(inputs, training=False).numpy(), candidates.mean(-1), atol=1e-6)
    # The weights are a softmax of trainable logits: other logits, another weighted mean.
    mix = model.get_layer("seasonal_base")
    logits = np.array([0.0, 1.0, -1.0, 2.0], dtype=np.float32)
    mix.logits.assign(logits / mix.LOGIT_SCALE)
    weights = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(model(inputs, training=False).numpy(), candidates @ weights, atol=1e-5)
    # Without the mix the base is the seasonal naive forecast; the smoothed ones only feed the head.
    naive = trainer_lib.build_model(spec, 14, 3, dataclasses.replace(config, seasonal_base_mix=False))
    np.testing.assert_allclose(naive(inputs, training=False).numpy(), inputs[lag], atol=1e-6)
    assert naive.get_layer("state_and_future").output.shape == (None, 4 + 3 * 4)


def test_mix_weights_fit_recovers_the_convex_weights_of_made_up_candidates():
    rng = np.random.default_rng(3)
    candidates = rng.normal(size=(400, 4, 3))
    # Step 0-1 the mean of candidates 0 and 1 at 0.7 / 0.3, steps 2-3 candidate 2 alone; Laplace noise.
    truth = np.array([[0.7, 0.3, 0.0], [0.7, 0.3, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    targets = np.einsum("nhk,hk->nh", candidates, truth) + rng.laplace(scale=0.05, size=(400, 4))
    per_step = trainer_lib.fit_mix_weights(candidates, targets, per_step=True)
    assert per_step.shape == (4, 3)
    np.testing.assert_allclose(per_step.sum(-1), 1.0)
    np.testing.assert_allclose(per_step, truth, atol=0.02)
    # One shared set: the least absolute (or squared) error over the simplex, as low as the best
    # point of a 0.01 grid of the simplex finds.
    grid = np.array([(a, b, 100 - a - b) for a in range(101) for b in range(101 - a)]) / 100
    residuals = np.einsum("nhk,gk->gnh", candidates, grid) - targets
    for absolute in (True, False):
        shared = trainer_lib.fit_mix_weights(candidates, targets, absolute=absolute)
        assert shared.shape == (3,) and (shared >= 0).all() and abs(shared.sum() - 1) < 1e-9
        residual = candidates @ shared - targets
        error = np.abs(residual).mean() if absolute else (residual ** 2).mean()
        best = (np.abs(residuals) if absolute else residuals ** 2).mean(axis=(1, 2)).min()
        assert best - 1e-3 < error <= best + 1e-4


def test_per_step_mix_weights_each_target_step_and_set_mix_weights_sets_the_softmax():
    lag = transform_lib.scaled_feature(features.lag_feature(7))
    bases = [transform_lib.scaled_feature(features.base_feature(k)) for k in features.SEASONAL_BASES]
    spec = {features.HISTORY_SCALED: 14, lag: 3, **dict.fromkeys(bases, 3)}
    assert trainer_lib.mix_candidates(spec) == [lag, *bases]
    rng = np.random.default_rng(2)
    inputs = {name: rng.normal(size=(5, width)).astype(np.float32) for name, width in spec.items()}
    model = trainer_lib.build_model(spec, 14, 3, config_lib.ModelConfig(lstm_units=(4,), quantiles=(),
                                                                        base_mix_weights="per_step"))
    mix = model.get_layer("seasonal_base")
    assert tuple(mix.logits.shape) == (3, 4)
    weights = np.array([[1, 0, 0, 0], [0.5, 0.5, 0, 0], [0.1, 0.2, 0.3, 0.4]])
    mix.set_mix_weights(weights)
    # Zero weights become the floor; every row stays on the simplex.
    np.testing.assert_allclose(mix.mix_weights(), np.maximum(weights, trainer_lib.MIX_WEIGHT_FLOOR), atol=4e-4)
    candidates = np.stack([inputs[lag], *(inputs[b] for b in bases)], axis=-1)
    np.testing.assert_allclose(model(inputs, training=False).numpy(), np.einsum("nhk,hk->nh", candidates, weights),
                               atol=2e-3)


@pytest.fixture(scope="module")
def two_cycle_transform(tmp_path_factory):
    """The made-up two-series windows with a season of 5 steps: the context of 10 holds two cycles, so the
    smoothed bases differ from the seasonal naive forecast (with the fixtures' one cycle they equal it)."""
    out = str(tmp_path_factory.mktemp("two_cycle_transform"))
    conftest.run_transform(out, conftest.two_series_splits(), conftest.unit_transform_config(
        "per_series", seasonal_periods=(5,)))
    return out


@pytest.mark.parametrize("how", ["fit", "frozen"])
def test_the_fitted_mix_starts_from_the_training_windows_best_weights(two_cycle_transform, how):
    out = two_cycle_transform
    train, evaluation, args = conftest.fit_inputs(out)
    _, tft_output, _, _ = args
    names = trainer_lib.mix_candidates(trainer_lib.model_inputs(tft_output))
    assert len(names) > 1

    def data_of(files):
        batches = list(trainer_lib.make_dataset(files, *args[:2], batch_size=1024, shuffle=False, seed=0))
        return (np.concatenate([np.stack([x[n].numpy() for n in names], -1) for x, _ in batches]),
                np.concatenate([y.numpy() for _, y in batches]))

    def base_error(weights, files):
        candidates, targets = data_of(files)
        return np.abs(candidates @ weights - targets).mean()

    config = dataclasses.replace(TINY, quantiles=(), base_mix_fit=how)
    fitted = trainer_lib.fit_mix_weights(*data_of(train))
    # The fitted base beats the equal weights' on the training windows (the fit did something).
    assert base_error(fitted, train) < base_error(np.full(len(names), 1 / len(names)), train)
    model = trainer_lib.fit(train, evaluation, *args, config).model
    weights = model.get_layer("seasonal_base").mix_weights()
    if how == "frozen":
        np.testing.assert_allclose(weights, np.maximum(fitted, trainer_lib.MIX_WEIGHT_FLOOR), atol=1e-4)
    else:
        # Trained on from there: moved, but nearer the fit than the equal start.
        assert not np.allclose(weights, fitted, atol=1e-6)
        assert np.abs(weights - fitted).max() < np.abs(np.full(len(names), 1 / len(names)) - fitted).max()
    # The refit fits on its own windows (train + eval), with the same seed the same each time.
    refit = [trainer_lib.fit(train + evaluation, None, *args, trainer_lib.refit_config(config, 1)).model
             for _ in range(2)]
    both = trainer_lib.fit_mix_weights(*data_of(train + evaluation))
    assert not np.allclose(both, fitted, atol=1e-3)
    for a, b in zip(refit[0].get_weights(), refit[1].get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    if how == "frozen":
        np.testing.assert_allclose(refit[0].get_layer("seasonal_base").mix_weights(),
                                   np.maximum(both, trainer_lib.MIX_WEIGHT_FLOOR), atol=1e-4)


def test_auto_chooses_the_lower_eval_loss_first_on_a_tie():
    assert trainer_lib.choose_base_mix_fit({"none": 0.31, "fit": 0.30}) == "fit"
    assert trainer_lib.choose_base_mix_fit({"none": 0.30, "fit": 0.31}) == "none"
    assert trainer_lib.choose_base_mix_fit({"fit": 0.30, "none": 0.30}) == "none"


def test_auto_keeps_the_variant_with_the_lower_eval_loss_and_records_it(two_cycle_transform, tmp_path):
    out = two_cycle_transform
    train, evaluation, args = conftest.fit_inputs(out)
    # Early stopping on, as in the pipeline: each variant's eval loss is that of its best epoch.
    config = dataclasses.replace(TINY, quantiles=(), base_mix_fit="auto", epochs=6, early_stopping_patience=2,
                                 learning_rate=0.05)
    alone = {v: trainer_lib.fit(train, evaluation, *args, dataclasses.replace(config, base_mix_fit=v))
             for v in ("none", "fit")}
    auto = trainer_lib.fit(train, evaluation, *args, config, log_dir=str(tmp_path))
    # Each variant trained as it would alone (same seed, same data): the same eval losses.
    assert auto.eval_losses == {v: alone[v].eval_loss for v in ("none", "fit")}
    assert alone["none"].eval_loss != alone["fit"].eval_loss
    lower = min(("none", "fit"), key=lambda v: alone[v].eval_loss)
    assert auto.base_mix_fit == lower and auto.eval_loss == alone[lower].eval_loss
    assert auto.epochs == alone[lower].epochs
    for a, b in zip(auto.model.get_weights(), alone[lower].model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # The run's report reads the chosen variant's log; its best eval loss is the one chosen on.
    with open(tmp_path / trainer_lib.TRAINING_LOG_FILE) as f:
        val_loss = [float(row["val_loss"]) for row in csv.DictReader(f)]
    assert min(val_loss) == pytest.approx(auto.eval_loss)
    assert sorted(os.listdir(tmp_path)) == ["base_mix_fit_fit", "base_mix_fit_none", trainer_lib.TRAINING_LOG_FILE]
    record = json.loads(json.dumps(trainer_lib.training_record(["train"], auto, None, 0)))
    assert record["base_mix_fit_chosen"] == lower
    assert record["base_mix_fit_eval_losses"] == pytest.approx(auto.eval_losses)
    with pytest.raises(ValueError, match="needs eval data"):
        trainer_lib.fit(train + evaluation, None, *args, config)


def test_auto_trains_once_where_the_fit_keeps_equal_weights(covariate_transform, tmp_path):
    out, _ = covariate_transform
    train, evaluation, args = conftest.fit_inputs(out)
    _, tft_output, _, _ = args
    # The fixtures' context holds one cycle: every smoothed base is the seasonal naive forecast.
    config = dataclasses.replace(TINY, quantiles=(), base_mix_fit="none")
    names = trainer_lib.mix_candidates(trainer_lib.model_inputs(tft_output))
    batches = list(trainer_lib.make_dataset(train, *args[:2], batch_size=1024, shuffle=False, seed=0))
    fitted = trainer_lib.fit_mix_weights(np.concatenate([np.stack([x[n].numpy() for n in names], -1)
                                                         for x, _ in batches]),
                                         np.concatenate([y.numpy() for _, y in batches]))
    assert len(names) > 1
    np.testing.assert_allclose(fitted, np.full(len(fitted), 1 / len(fitted)), atol=1e-7)
    auto = trainer_lib.fit(train, evaluation, *args, dataclasses.replace(config, base_mix_fit="auto"),
                           log_dir=str(tmp_path))
    # One training, logged where a plain one logs (the variants log in their own folders).
    assert os.path.exists(tmp_path / trainer_lib.TRAINING_LOG_FILE) and not glob.glob(str(tmp_path / "base_mix_*"))
    none = trainer_lib.fit(train, evaluation, *args, config)
    assert auto.base_mix_fit == "none" and auto.eval_losses is None and auto.eval_loss == none.eval_loss
    for a, b in zip(auto.model.get_weights(), none.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("chosen", ["none", "fit"])
def test_the_refit_trains_the_variant_its_base_model_chose(two_cycle_transform, tmp_path, chosen):
    out = two_cycle_transform
    config = dataclasses.replace(TINY, quantiles=(), base_mix_fit="auto", refit=True)
    assert trainer_lib.refit_config(config, 1, chosen) == dataclasses.replace(
        config, base_mix_fit=chosen, epochs=1, early_stopping_patience=0)
    with pytest.raises(ValueError, match="names no variant"):
        trainer_lib.refit_config(config, 1, None)
    # The refit Trainer's run_fn reads the choice from its base model's training record.
    base_model = str(tmp_path / "base")
    trainer_lib.write_training_record(base_model, {"epochs": 1, "base_mix_fit_chosen": chosen})
    windows = dataclasses.asdict(dataclasses.replace(conftest.UNIT_WINDOWS, seasonal_periods=(5,)))
    fn_args = tfx_fn_args(out, tmp_path, base_model,
                          {"windows": windows, "model": dataclasses.asdict(config), "refit": True})
    trainer_lib.run_fn(fn_args)
    record = trainer_lib.read_training_record(fn_args.serving_model_dir)
    assert record["base_mix_fit_chosen"] == chosen and record["epochs"] == 1 and record["eval_loss"] is None
    files = conftest.transformed_files(out, "train") + conftest.transformed_files(out, "eval")
    expected = trainer_lib.fit(files, None, conftest.data_accessor(out),
                               tft.TFTransformOutput(os.path.join(out, "transform_graph")), conftest.UNIT_HISTORY,
                               conftest.UNIT_HORIZON, dataclasses.replace(config, base_mix_fit=chosen, epochs=1,
                                                                          early_stopping_patience=0)).model
    weights = expected.get_layer("seasonal_base").mix_weights()
    served = tf.saved_model.load(fn_args.serving_model_dir)
    (logits,) = [v.numpy() for v in served.variables if "seasonal_base" in v.name]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(keras.ops.softmax(logits * trainer_lib.SeasonalBaseMix.LOGIT_SCALE)), weights,
        atol=1e-6)


def tfx_fn_args(out: str, tmp_path, base_model: str, custom_config: dict) -> tfx.components.FnArgs:
    """The refit Trainer's arguments to run_fn on the transformed windows of ``out``."""
    train, evaluation = conftest.transformed_files(out, "train"), conftest.transformed_files(out, "eval")
    return tfx.components.FnArgs(
        train_files=train + evaluation, eval_files=evaluation, data_accessor=conftest.data_accessor(out),
        transform_output=os.path.join(out, "transform_graph"), serving_model_dir=str(tmp_path / "serving"),
        model_run_dir=str(tmp_path / "model_run"), base_model=base_model, custom_config=custom_config)


def test_tuner_hyperparameters_replace_the_configured_ones():
    import keras_tuner
    hp = keras_tuner.HyperParameters()
    hp.Fixed("layers", 3)
    hp.Fixed("units", 32)
    hp.Fixed("dropout", 0.1)
    hp.Fixed("learning_rate", 0.005)
    fn_args = type("FnArgs", (), {"custom_config": {"model": {"epochs": 7}}, "hyperparameters": hp.get_config()})
    tuned = trainer_lib._model_config(fn_args)
    assert (tuned.lstm_units, tuned.dropout, tuned.learning_rate, tuned.epochs) == ((32, 32, 32), 0.1, 0.005, 7)


def test_the_search_space_defaults_to_the_configured_model_and_widens_to_hold_it():
    default = trainer_lib.search_space(config_lib.ModelConfig())
    assert default.values == {"layers": 2, "units": 64, "dropout": 0.2, "learning_rate": 1e-3}
    assert trainer_lib.tuned_config(config_lib.ModelConfig(), default.values) == config_lib.ModelConfig()
    odd = config_lib.ModelConfig(lstm_units=(48,) * 4, dropout=0.7, learning_rate=0.05)
    space = {hp.name: hp for hp in trainer_lib.search_space(odd).space}
    assert (space["layers"].min_value, space["layers"].max_value) == (1, 4)
    assert list(space["units"].values) == [16, 32, 48, 64, 128]
    assert (space["dropout"].max_value, space["learning_rate"].max_value) == (0.7, 0.05)
    assert trainer_lib.search_space(odd).values == {"layers": 4, "units": 48, "dropout": 0.7, "learning_rate": 0.05}


def test_the_tuner_tries_the_configured_model_first_and_scores_trials_as_the_trainer_trains(two_cycle_transform,
                                                                                            tmp_path):
    out = two_cycle_transform
    train, evaluation, args = conftest.fit_inputs(out)
    # auto, as the pipeline's default: each trial trains both starts of the mix, as the Trainer does.
    config = dataclasses.replace(TINY, quantiles=(), base_mix_fit="auto", epochs=4, early_stopping_patience=2,
                                 tuner_trials=3)
    tuner = trainer_lib.TrainerSearch(train, evaluation, *args, config, directory=str(tmp_path),
                                      project_name="tuning", overwrite=True)
    tuner.search()
    trials = [tuner.oracle.trials[i] for i in sorted(tuner.oracle.trials)]
    assert len(trials) == 3 and len({tuple(sorted(t.hyperparameters.values.items())) for t in trials}) == 3
    # Trial 0 is the configured model, scored by the eval loss the Trainer's fit gets for it.
    assert trainer_lib.tuned_config(config, trials[0].hyperparameters.values) == config
    assert trials[0].score == trainer_lib.fit(train, evaluation, *args, config).eval_loss
    # The best trial's settings retrain to the same eval loss: the Trainer gets the model the search scored.
    best = tuner.get_best_hyperparameters()[0].values
    assert min(t.score for t in trials) <= trials[0].score
    assert trainer_lib.fit(train, evaluation, *args, trainer_lib.tuned_config(config, best)).eval_loss == \
        min(t.score for t in trials)


@pytest.mark.parametrize("scaling", ["global", "window_std"])
def test_constant_series_forecasts_near_the_constant_in_original_units(tmp_path, scaling):
    rng = np.random.default_rng(0)
    values = 500 + rng.normal(0, 2, 200)
    splits = {"train": conftest.make_windows(values[:150], "s", covariate=False),
              "eval": conftest.make_windows(values[150:], "s", covariate=False, start=150)}
    out = str(tmp_path)
    conftest.run_transform(out, splits, conftest.unit_transform_config(scaling), covariate=False)
    # A free head: this checks the way back to original units. With the seasonal base, a model of
    # white noise starts as last season's (noisy) value and needs far more than 5 epochs to learn
    # to average it out; tests/test_future_covariates.py and the accuracy benchmark cover the base.
    # A point model: the pinball loss of 7 levels gives the median a seventh of the gradient, too
    # little in 5 epochs; tests/test_export.py checks a quantile model's way back.
    model_config = config_lib.ModelConfig(scaling=scaling, lstm_units=(8,), epochs=5, batch_size=16, seed=1,
                                          serving_xla=False, seasonal_base=False, quantiles=())
    model = _train(out, model_config)
    export_dir = str(tmp_path / "export")
    trainer_lib.export_serving_model(model, tft.TFTransformOutput(os.path.join(out, "transform_graph")),
                                     export_dir, model_config)
    loaded = repository.load_version(export_dir, 1)
    signature = loaded.signatures[contract.SIGNATURE_NAME]
    # The calendar is on: the signature takes each window's origin timestamp beside its context.
    assert set(signature.inputs) == {contract.INPUT_KEY, contract.ORIGIN_TIMESTAMP_INPUT_KEY}
    windows = np.stack([r["history"] for r in splits["eval"]])
    origins = np.concatenate([r["origin_timestamp"] for r in splits["eval"]])
    forecast = loaded.session.run(signature.outputs[contract.OUTPUT_KEY].name,
                                  {signature.inputs[contract.INPUT_KEY].name: windows,
                                   signature.inputs[contract.ORIGIN_TIMESTAMP_INPUT_KEY].name: origins})
    # Scaled outputs would sit near 0; in original units the forecasts sit near 500, within the
    # noise (std 2) of the series. window_std centres each window on its own noisy mean and scales
    # by its own spread, so its forecasts spread wider: within 3 noise stds.
    assert forecast.shape == (len(windows), conftest.UNIT_HORIZON)
    assert np.abs(forecast - 500).max() < (3 if scaling == "global" else 6)
    assert abs(float(forecast.mean()) - 500) < 1


def test_trainer_logs_to_tensorboard_and_csv_in_the_model_run_directory(pipeline_run):
    config, _ = pipeline_run
    # With --base-mix-fit auto each start logs in its own folder (base_mix_fit_none, base_mix_fit_fit).
    events = glob.glob(os.path.join(config.pipeline_root, "Trainer", "model_run", "*", "**", "train", "events.out.*"),
                       recursive=True)
    assert events and os.path.getsize(events[0]) > 0
    (log,) = glob.glob(os.path.join(config.pipeline_root, "Trainer", "model_run", "*", trainer_lib.TRAINING_LOG_FILE))
    with open(log) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == list(range(config.model.epochs))
    assert all(float(r["loss"]) > 0 and float(r["val_loss"]) > 0 for r in rows)


def test_run_flags_reach_the_model_config():
    args = cli.build_parser().parse_args([
        "run", "--data", "d.csv", "--output", "o", "--scaling", "window_mean", "--lstm-units", "32,16",
        "--recurrent-dropout", "0.1", "--loss", "huber", "--early-stopping-patience", "3", "--no-serving-xla",
        "--tune", "--tuner-trials", "4", "--no-refit"])
    model = cli.pipeline_config_from_flags(args).model
    assert (model.scaling, model.lstm_units, model.recurrent_dropout, model.loss) == ("window_mean", (32, 16), 0.1,
                                                                                     "huber")
    assert (model.early_stopping_patience, model.serving_xla, model.tune, model.tuner_trials) == (3, False, True, 4)
    assert model.refit is False and config_lib.ModelConfig().refit is True


@pytest.mark.slow
def test_tune_runs_the_tuner_and_its_best_hyperparameters_feed_the_trainer(tmp_path, pipeline_run):
    config, _ = pipeline_run
    tuned = dataclasses.replace(config, output_dir=str(tmp_path / "tuned"),
                                model=dataclasses.replace(config.model, tune=True, tuner_trials=2, epochs=1))
    assert [type(c).__name__ for c in pipeline_lib.create_pipeline(tuned).components].count("Tuner") == 1
    assert "Tuner" not in [type(c).__name__ for c in pipeline_lib.create_pipeline(config).components]
    result = local_runner.run(tuned)
    assert result.pushed_model is not None
    best = glob.glob(os.path.join(tuned.pipeline_root, "Tuner", "best_hyperparameters", "*", "*.txt"))
    with open(best[0]) as f:
        values = json.load(f)["values"]
    units = (values["units"],) * values["layers"]
    signature = repository.load_version(result.pushed_model, 1).signatures[contract.SIGNATURE_NAME]
    assert signature.inputs[contract.INPUT_KEY].tensor_shape.dim[1].size == config.windows.context
    # The pushed model (the refit, which takes the Tuner's hyperparameters too) has the tuned layers:
    # as many LSTM kernels, of the tuned width.
    kernels = sorted((v.name, v.shape[0]) for v in tf.saved_model.load(result.pushed_model).variables
                     if v.name.startswith("lstm_") and "recurrent_kernel" in v.name)
    assert [width for _, width in kernels] == list(units)


def _ensemble_spec() -> dict[str, int]:
    lag = transform_lib.scaled_feature(features.lag_feature(7))
    bases = [transform_lib.scaled_feature(features.base_feature(k)) for k in sorted(features.SEASONAL_BASES)]
    return {features.HISTORY_SCALED: 14, features.CALENDAR_HISTORY: 14 * 2, lag: 3, **dict.fromkeys(bases, 3),
            features.CALENDAR_FUTURE: 3 * 2}


def _branch_outputs(model: keras.Model, name: str, size: int, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Each branch's own output, read from its last layer: ``[K, batch, ...]``."""
    return np.stack([keras.Model(model.input, model.get_layer(f"{name}_{k}").output)(inputs, training=False).numpy()
                     for k in range(size)])


def test_a_single_network_is_todays_model():
    """--ensemble-size 1 (the default) builds the plain stacked LSTM, layer for layer, and trains it as is."""
    config = config_lib.ModelConfig(quantiles=())
    assert config.ensemble_size == 1
    model = trainer_lib.build_model(_ensemble_spec(), 14, 3, config)
    names = [layer.name for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    assert sorted(names) == sorted([
        f"steps_{features.HISTORY_SCALED}", f"steps_{features.CALENDAR_HISTORY}", "channels", "lstm_0", "dropout_0",
        "lstm_1", "dropout_1", "state_and_future", "head_hidden", "head_dropout", "head", "seasonal_base",
        "correction", "forecast_scaled"])
    assert [layer.units for layer in model.layers if isinstance(layer, keras.layers.LSTM)] == [64, 64]
    assert model.output_shape == (None, 3) and model.loss == "mae"
    assert trainer_lib.training_model(model, config) is model


def test_weight_decay_shrinks_each_weight_by_the_learning_rate_times_it():
    config = config_lib.ModelConfig(quantiles=(), lstm_units=(4,), weight_decay=0.5, learning_rate=0.1)
    model = trainer_lib.build_model(_ensemble_spec(), 14, 3, config)
    assert trainer_lib.build_model(_ensemble_spec(), 14, 3, config_lib.ModelConfig(quantiles=())) \
        .optimizer.weight_decay is None
    # Adam's own step is zero where the gradient is: the decay alone moves those weights (AdamW).
    weight = model.get_layer("head_hidden").kernel
    before = weight.numpy()
    model.optimizer.apply_gradients([(np.zeros(before.shape, np.float32), weight)])
    np.testing.assert_allclose(weight.numpy(), before * (1 - 0.1 * 0.5), rtol=1e-6)


@pytest.mark.parametrize("interval_method", ["conformal", "quantile_head"])
def test_an_ensemble_forecasts_the_mean_of_its_branches(interval_method):
    config = config_lib.ModelConfig(lstm_units=(5, 4), ensemble_size=3, interval_method=interval_method)
    spec = _ensemble_spec()
    model = trainer_lib.build_model(spec, 14, 3, config)
    rng = np.random.default_rng(4)
    # Random weights everywhere (corrections start at zero: untrained branches would all be the base).
    for weight in model.weights:
        weight.assign(rng.normal(0, 0.5, weight.shape).astype(np.float32))
    inputs = {name: rng.normal(size=(6, width)).astype(np.float32) for name, width in spec.items()}
    name = "quantiles_scaled" if config.quantile_head else "forecast_scaled"
    branches = _branch_outputs(model, name, 3, inputs)
    forecast = model(inputs, training=False).numpy()
    assert forecast.shape == ((6, 3, len(config.quantiles)) if config.quantile_head else (6, 3))
    assert not np.allclose(branches[0], branches[1], atol=1e-3)
    np.testing.assert_allclose(forecast, branches.mean(axis=0), rtol=1e-5, atol=1e-6)
    if config.quantile_head:
        assert (np.diff(forecast, axis=-1) >= 0).all()
    # Flat: one functional model, each branch's layers named by branch, not nested models.
    assert not [layer for layer in model.layers if isinstance(layer, keras.Model)]
    assert {f"lstm_{k}_{i}" for k in range(3) for i in range(2)} <= {layer.name for layer in model.layers}


def test_ensemble_branches_start_from_different_weights():
    spec = _ensemble_spec()
    keras.utils.set_random_seed(5)
    single = trainer_lib.build_model(spec, 14, 3, config_lib.ModelConfig(lstm_units=(5, 4), quantiles=()))
    keras.utils.set_random_seed(5)
    ensemble = trainer_lib.build_model(spec, 14, 3, config_lib.ModelConfig(lstm_units=(5, 4), quantiles=(),
                                                                           ensemble_size=3))
    kernels = [ensemble.get_layer(f"lstm_{k}_0").cell.kernel.numpy() for k in range(3)]
    hidden = [ensemble.get_layer(f"head_hidden_{k}").kernel.numpy() for k in range(3)]
    for a, b in [(0, 1), (0, 2), (1, 2)]:
        assert not np.allclose(kernels[a], kernels[b]) and not np.allclose(hidden[a], hidden[b])
    # Branch 0 draws first, as the single network does: with one seed, the same initial weights.
    np.testing.assert_array_equal(kernels[0], single.get_layer("lstm_0").cell.kernel.numpy())
    np.testing.assert_array_equal(hidden[0], single.get_layer("head_hidden").kernel.numpy())


def test_each_branch_is_trained_on_its_own_loss():
    """The training loss is the mean of the branches' own losses, not the loss of their mean."""
    config = config_lib.ModelConfig(lstm_units=(4,), quantiles=(), ensemble_size=3, loss="mae", learning_rate=0.01)
    spec = _ensemble_spec()
    model = trainer_lib.build_model(spec, 14, 3, config)
    rng = np.random.default_rng(6)
    for weight in model.weights:
        weight.assign(rng.normal(0, 0.5, weight.shape).astype(np.float32))
    training = trainer_lib.training_model(model, config)
    inputs = {name: rng.normal(size=(32, width)).astype(np.float32) for name, width in spec.items()}
    y = rng.normal(size=(32, 3)).astype(np.float32)
    branches = _branch_outputs(model, "forecast_scaled", 3, inputs)
    assert training.output_shape == (None, 3, 3)
    own = np.abs(branches - y).mean()
    of_mean = np.abs(branches.mean(axis=0) - y).mean()
    assert of_mean < own - 1e-3  # the two differ, so the check below can fail
    results = training.evaluate(inputs, y, batch_size=32, verbose=0, return_dict=True)
    assert results["loss"] == pytest.approx(own, rel=1e-5)
    assert results["mae"] == pytest.approx(of_mean, rel=1e-5)  # the metric: the ensemble's forecast
    # Training moves every branch, and the served model (sharing the weights) with it.
    before = [model.get_layer(f"correction_{k}").kernel.numpy().copy() for k in range(3)]
    training.fit(inputs, y, batch_size=32, epochs=1, verbose=0)
    assert all(not np.array_equal(b, model.get_layer(f"correction_{k}").kernel.numpy())
               for k, b in enumerate(before))


def test_calibration_folds_train_before_a_held_out_stretch_of_train_and_their_errors_join_evals(covariate_transform):
    out, splits = covariate_transform
    train, evaluation, args = conftest.fit_inputs(out)
    accessor, tft_output, history, horizon = args
    config = dataclasses.replace(TINY, scaling="window_std", interval_method="conformal", calibration_folds=1)
    series, origins = trainer_lib.window_keys(train, accessor, tft_output)
    expected = sorted((r["series_id"][0], r["origin_timestamp"][0]) for r in splits["train"])
    assert sorted(zip(series, origins)) == expected
    eval_origins = [r["origin_timestamp"][0] for r in splits["eval"]]
    a = trainer_lib.fit(train, evaluation, *args, config)
    [(fold_model, held_out)] = trainer_lib.train_folds(train, evaluation, accessor, tft_output, history, horizon, 1,
                                                      config, a)
    [(fold_train, expected_held_out)] = windowing.held_out_folds(
        series, origins, max(eval_origins) - origins.max(), 1, horizon)
    np.testing.assert_array_equal(held_out, expected_held_out)
    assert 0 < fold_train.sum() and 0 < held_out.sum() < len(origins) - fold_train.sum()
    # The fold's model is the refit's recipe on the fold's training windows, and reads no other.
    again = trainer_lib.fit(train, None, *args, trainer_lib.refit_config(config, a.epochs, a.base_mix_fit),
                            keep=fold_train)
    assert again.windows == fold_train.sum() and again.epochs == a.epochs
    for w, v in zip(fold_model.get_weights(), again.model.get_weights(), strict=True):
        np.testing.assert_array_equal(w, v)
    kept = trainer_lib.make_dataset(train, accessor, tft_output, 16, False, 0, (features.ORIGIN_TIMESTAMP,),
                                    keep=held_out)
    np.testing.assert_array_equal(np.concatenate([x[features.ORIGIN_TIMESTAMP].numpy().ravel() for x, _ in kept]),
                                  origins[held_out])
    # By hand: A's scaled eval errors and the fold model's on its held-out windows, pooled (spread 1).
    adjustments, report = trainer_lib.calibrate(a.model, evaluation, accessor, tft_output, config,
                                                folds=[(fold_model, train, held_out)])
    assert report["windows"] == len(splits["eval"]) and report["fold_windows"] == [held_out.sum()]
    errors = []
    for model, files, keep in ((a.model, evaluation, None), (fold_model, train, held_out)):
        for x, y in trainer_lib.make_dataset(files, accessor, tft_output, 16, False, 0, keep=keep):
            errors.append(y.numpy() - model(x, training=False).numpy())
    errors = np.concatenate(errors)
    # Each part's MAE, eval's windows first, as the report gives them for a choice made on the fold.
    n_eval = report["windows"]
    assert report["scaled_mae"] == {"eval": pytest.approx(np.abs(errors[:n_eval]).mean(), rel=1e-5),
                                    "folds": [pytest.approx(np.abs(errors[n_eval:]).mean(), rel=1e-5)]}
    expected = quantiles.pooled_conformal_adjustments(
        errors, np.zeros(errors.shape + (len(config.quantiles),)), config.quantiles)
    np.testing.assert_allclose(adjustments, expected, rtol=1e-5, atol=1e-6)
    alone, _ = trainer_lib.calibrate(a.model, evaluation, accessor, tft_output, config)
    assert not np.allclose(alone, adjustments)
