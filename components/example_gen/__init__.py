"""The time-series example generator: CSV series in, windowed tf.Examples split by time out."""
