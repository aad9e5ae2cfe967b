"""Training throughput: the Trainer's model and tfxio input pipeline against ``model.fit`` on numpy.

Both train the same model (the default 2 x 64 stacked LSTM, L=52, H=4) with the same batch size on
the same transformed CO2 training windows; the baseline holds them in numpy arrays. Throughput is
windows per second over the epochs after the first (steady state: the first epoch traces the
step function and, in the Trainer's pipeline, fills the cache), baseline and candidate fits
alternated over ``--rounds`` so that load on a shared CPU hits both alike.

  tools/in-env python -m benchmarks.train [--run-dir DIR] [--epochs 6] [--rounds 2]
"""

import argparse
import os
import tempfile
import time

import keras
import numpy as np
import tensorflow_transform as tft

import benchmarks
from components import trainer as trainer_lib
from pipeline import config as config_lib


class _EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default=os.path.join(tempfile.gettempdir(), "lstm_forecast_bench"))
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2, help="baseline/candidate pairs, alternated")
    args = parser.parse_args()

    transform_dir, examples_dir = benchmarks.transform_outputs(args.run_dir)
    tft_output = tft.TFTransformOutput(transform_dir)
    windows, model_config = benchmarks.bundled_config(args.run_dir).windows, config_lib.ModelConfig()
    accessor = benchmarks.data_accessor(examples_dir)
    train_files = benchmarks.split_files(examples_dir, "train")

    def fit(x, y=None, **kwargs) -> list[float]:
        keras.utils.set_random_seed(model_config.seed)
        model = trainer_lib.build_model(trainer_lib.model_inputs(tft_output), windows.history, windows.horizon,
                                        model_config)
        timer = _EpochTimer()
        model.fit(x, y, epochs=args.epochs, verbose=0, callbacks=[timer], **kwargs)
        return timer.seconds

    dataset = trainer_lib.make_dataset(train_files, accessor, tft_output, model_config.batch_size, True, 1)
    xs, ys = zip(*dataset.as_numpy_iterator())
    x = {k: np.concatenate([b[k] for b in xs]) for k in xs[0]}
    y = np.concatenate(ys)
    n = len(y)

    # Alternated, each steady-state epoch kept, so that a change of load on the shared CPU hits
    # both alike; the first epoch of every fit is reported apart.
    baseline, candidate, first = [], [], {"baseline": [], "candidate": []}
    for _ in range(args.rounds):
        seconds = fit(x, y, batch_size=model_config.batch_size, shuffle=True)
        first["baseline"].append(seconds[0])
        baseline += seconds[1:]
        seconds = fit(trainer_lib.make_dataset(train_files, accessor, tft_output, model_config.batch_size, True, 1))
        first["candidate"].append(seconds[0])
        candidate += seconds[1:]
    rate = lambda seconds: n / benchmarks.median(seconds)
    result = {"windows": n, "batch_size": model_config.batch_size, "epochs": args.epochs, "rounds": args.rounds,
              "baseline_numpy_fit_windows_per_s": round(rate(baseline)),
              "trainer_tfxio_windows_per_s": round(rate(candidate)),
              "ratio": round(rate(candidate) / rate(baseline), 3), "goal_ratio": 1.0}
    benchmarks.print_report(
        "Training throughput, steady state (median epoch after the first)",
        ["pipeline", "windows/s", "first epoch s", "ratio"],
        [["model.fit(numpy arrays) [baseline]", round(rate(baseline)),
          f"{benchmarks.median(first['baseline']):.2f}", "1.00"],
         ["Trainer: tfxio + cache + shuffle + prefetch", round(rate(candidate)),
          f"{benchmarks.median(first['candidate']):.2f}", f"{result['ratio']:.2f}"]],
        result)


if __name__ == "__main__":
    main()
