"""Packaging of lstm-forecast: dependencies come from requirements/*.in, exact pins from requirements.lock."""

import pathlib

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent


def requirements(name: str) -> list[str]:
    lines = (HERE / "requirements" / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


setup(
    name="lstm-forecast",
    version="0.1.0",
    description="Time-series forecasting with a stacked LSTM: a TFX pipeline served by TensorFlow Serving",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.14",
    packages=find_packages(include=["pipeline", "pipeline.*", "components", "components.*", "serving"]),
    package_data={"pipeline.report": ["templates/*.html"]},
    install_requires=requirements("base.in"),
    extras_require={"test": requirements("test.in")},
    entry_points={"console_scripts": ["lstm-forecast = pipeline.cli:main"]},
)
