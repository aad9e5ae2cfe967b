# syntax=docker/dockerfile:1
# Production images of lstm-forecast. Targets:
#   serving-cpu  TF Serving (CPU) with the pushed model versions and serving/config/
#   serving-gpu  the same on TF Serving's GPU image
#   pipeline     the lstm-forecast package on Debian 13 with Python 3.13 (Kubeflow / Vertex runs)
#
#   docker build --target serving-cpu --build-arg MODEL_DIR=runs/demo/serving_model/lstm_forecast -t lstm-forecast-serving:cpu .
#   docker build --target pipeline -t lstm-forecast-pipeline .
#
# TF Serving 2.21.0 is the release built on TensorFlow 2.21, the TensorFlow we train with
# (requirements.lock): the server has every op and attr the exported graphs can use. An older
# TF Serving may lack ops added since; see the README, "Production containers".

# TF_SERVING_VERSION: tag of tensorflow/serving (and <tag>-gpu). Keep it equal to the TensorFlow
# of requirements.lock. For reproducible builds pin a digest too: tensorflow/serving:2.21.0@sha256:...
ARG TF_SERVING_VERSION=2.21.0
# MODEL_DIR: build argument, the directory of numbered versions pushed by the pipeline
# (OUTPUT/serving_model/lstm_forecast); it is build output, not in the repository.
# .dockerignore lets runs/*/serving_model/ into the build context.
ARG MODEL_DIR=runs/demo/serving_model/lstm_forecast
ARG DEBIAN_IMAGE=debian:trixie-slim

# ---------------------------------------------------------------------------------------------
FROM tensorflow/serving:${TF_SERVING_VERSION} AS serving-cpu
ARG MODEL_DIR
ENV TFS_BATCHING_PARAMETERS_FILE=/config/batching_parameters_cpu.txt
COPY serving/config/models.config serving/config/monitoring.config serving/config/batching_parameters_cpu.txt serving/config/batching_parameters_gpu.txt /config/
COPY --chmod=755 serving/config/start_model_server.sh /usr/local/bin/start_model_server.sh
COPY ${MODEL_DIR}/ /models/lstm_forecast/
# 8500 gRPC, 8501 REST and Prometheus (/monitoring/prometheus/metrics).
EXPOSE 8500 8501
ENTRYPOINT ["/usr/local/bin/start_model_server.sh"]

# ---------------------------------------------------------------------------------------------
FROM tensorflow/serving:${TF_SERVING_VERSION}-gpu AS serving-gpu
ARG MODEL_DIR
ENV TFS_BATCHING_PARAMETERS_FILE=/config/batching_parameters_gpu.txt
COPY serving/config/models.config serving/config/monitoring.config serving/config/batching_parameters_cpu.txt serving/config/batching_parameters_gpu.txt /config/
COPY --chmod=755 serving/config/start_model_server.sh /usr/local/bin/start_model_server.sh
COPY ${MODEL_DIR}/ /models/lstm_forecast/
EXPOSE 8500 8501
ENTRYPOINT ["/usr/local/bin/start_model_server.sh"]

# ---------------------------------------------------------------------------------------------
# pipeline: the pinned environment of tools/in-env (requirements/*.in constrained by
# requirements.lock), built in a venv with a compiler (pyfarmhash, a TFDV dependency, builds from
# source on Python 3.13), then copied into a slim image without one.
FROM ${DEBIAN_IMAGE} AS pipeline-build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Debian 13's own python3 (3.13); versions follow the Debian point release of the base image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev g++ ca-certificates \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv
WORKDIR /src
COPY requirements/ requirements/
COPY requirements.lock ./
# Runtime dependencies only (base.in), at the versions of requirements.lock.
RUN /opt/venv/bin/pip install -r requirements/base.in -c requirements.lock
COPY setup.py README.md ./
COPY pipeline/ pipeline/
COPY components/ components/
COPY serving/ serving/
RUN /opt/venv/bin/pip install --no-deps . && /opt/venv/bin/lstm-forecast --help >/dev/null

FROM ${DEBIAN_IMAGE} AS pipeline
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 forecast
COPY --from=pipeline-build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
USER 1000:1000
WORKDIR /home/forecast
# Kubeflow / Vertex set the container's command (TFX's executor entry point), which replaces this.
ENTRYPOINT ["lstm-forecast"]
CMD ["--help"]
