#!/bin/sh
# Entry point of the serving-cpu and serving-gpu images: tensorflow_model_server with this
# project's flags (each one is explained in serving/config/flags.md). Arguments given to
# `docker run IMAGE ...` (or a compose `command:`) are appended to the flags.
#
# TFS_BATCHING_PARAMETERS_FILE is set by the image: the CPU or the GPU batching parameters.
set -eu
exec tensorflow_model_server \
  --port=8500 \
  --rest_api_port=8501 \
  --model_config_file=/config/models.config \
  --model_config_file_poll_wait_seconds=60 \
  --enable_batching=true \
  --batching_parameters_file="${TFS_BATCHING_PARAMETERS_FILE:?set by the image}" \
  --monitoring_config_file=/config/monitoring.config \
  --enable_model_warmup=true \
  --xla_cpu_compilation_enabled=true \
  "$@"
