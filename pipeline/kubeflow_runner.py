"""Compiles the pipeline for Kubeflow Pipelines / Vertex AI Pipelines (KubeflowV2DagRunner).

The JSON it writes is what ``kfp`` clients and Vertex AI submit; compiling needs no cluster. Every
component runs in ``image`` (the Dockerfile's ``pipeline`` target), which must hold this package at
the same paths as where the pipeline was compiled, as TFX resolves the Transform and Trainer module
files at compile time: compile inside the image, or from a checkout mounted at the same path.
Compiling also uploads those modules, as a wheel, into the pipeline root: with a ``gs://`` output
it needs Google Cloud credentials.
"""

import json
import os

from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

from pipeline.config import PipelineConfig
from pipeline.pipeline import create_pipeline


def compile_pipeline(config: PipelineConfig, image: str, output_path: str) -> dict:
    """Writes the Kubeflow V2 pipeline spec of ``config`` to ``output_path`` and returns it.

    Args:
      config: The run's settings; ``data.path`` and ``output_dir`` should be paths the cluster
        reaches (``gs://...`` on Vertex AI).
      image: Container image of every component.
      output_path: The JSON file to write.
    """
    runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
        config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(default_image=image),
        output_dir=os.path.dirname(os.path.abspath(output_path)),
        output_filename=os.path.basename(output_path))
    runner.run(create_pipeline(config), write_out=True)
    with open(output_path) as f:
        return json.load(f)
