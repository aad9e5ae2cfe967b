"""The command as a user meets it: one line per mistake, outputs only where asked, the libraries'
messages in a log file rather than on the screen."""

import argparse
import os
import re
import socket
import subprocess
import sys

import pytest

from pipeline import cli, console
from pipeline import config as config_lib
from serving import client as client_lib
from tests.conftest import DATA, REPO

# Lines that TensorFlow, absl, TFX, Beam, Keras or setuptools print, not the command.
# A line of TensorFlow's C++ start-up logging (absl's format: severity, date and time, thread, file:line).
# Which lines it writes depends on the processor (oneDNN's notice only where oneDNN is on), so the
# tests look for the format, not for one message.
TF_STARTUP = re.compile(r"^[IWE]\d{4} [\d:.]+ +\d+ \w+\.cc:\d+\] ", re.MULTILINE)
NOISE = re.compile(r"^(I0000|W0000|E0000|WARNING|INFO|ERROR|DEBUG|Epoch \d|running |copying |creating |writing )|"
                   r"absl|tensorflow|apache_beam|oneDNN|ZetaSQL|adding '|Traceback")


def small_data(tmp_path, rows=300):
    path = tmp_path / "data" / "co2.csv"
    path.parent.mkdir()
    with open(DATA) as f:
        path.write_text("".join(line for _, line in zip(range(rows + 1), f)))
    return path


def command(args, cwd, timeout=300):
    """Runs ``lstm-forecast ARGS`` as a user would, in ``cwd``; returns the completed process."""
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": REPO})


def test_every_commands_help_prints_and_run_shows_one_calibration_fold_by_default(capsys):
    parser = cli.build_parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert {"run", "demo", "serve", "predict", "forecast", "windows"} <= set(commands.choices)
    printed = {}
    for name in commands.choices:
        # As a user types it: a stray % in a flag's help would raise instead of exiting 0.
        with pytest.raises(SystemExit) as exit_:
            cli.build_parser().parse_args([name, "--help"])
        assert exit_.value.code == 0, name
        printed[name] = capsys.readouterr().out
        assert printed[name].startswith(f"usage: lstm-forecast {name}"), name
    run_help = " ".join(printed["run"].split())
    assert re.search(r"--calibration-folds CALIBRATION_FOLDS [^\[]*?\(default: 1\)", run_help)


@pytest.mark.parametrize("name", ["run", "windows", "demo"])
@pytest.mark.parametrize("output", ["gs://bucket/x", "s3://b/x", "file:///tmp/x"])
def test_a_remote_output_is_refused_for_a_local_run_and_nothing_is_written(tmp_path, monkeypatch, capsys, name,
                                                                           output):
    monkeypatch.chdir(tmp_path)
    assert cli.main([name, "--data", DATA, "--output", output]) == 1
    assert capsys.readouterr().err == (
        f"lstm-forecast {name}: error: --output {output}: a local run writes to a local directory; to run in the "
        "cloud, compile the pipeline with 'lstm-forecast compile-kubeflow' and submit it to Kubeflow Pipelines or "
        "Vertex AI\n")
    assert os.listdir(tmp_path) == []


def test_windows_prints_its_lines_and_logs_the_libraries(tmp_path):
    data, cwd, output = small_data(tmp_path), tmp_path / "cwd", tmp_path / "run"
    cwd.mkdir()
    done = command(["windows", "--data", str(data), "--output", str(output)], cwd)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert [line for line in lines if NOISE.search(line)] == []
    log = output / console.LOG_FILE
    assert f"log              {log} (TensorFlow, TFX and Beam; --verbose prints them)" in lines
    assert any("windows          train" in line for line in lines)
    # What the libraries said is in the log: TensorFlow's C++ start-up lines, absl's warnings.
    logged = log.read_text().splitlines()
    assert any(TF_STARTUP.match(line) for line in logged) and any("absl" in line for line in logged)
    # Nothing was written where the command ran, nor left in the temporary directory's log.
    assert os.listdir(cwd) == []


def test_verbose_prints_the_libraries_and_the_traceback(tmp_path):
    data = small_data(tmp_path)
    data.write_text(data.read_text() + "2024-01-01,x\n")
    done = command(["windows", "--data", str(data), "--output", str(tmp_path / "run"), "--verbose",
                    "--frequency", "W-SAT", "--history", "8", "--season-length", "52"], tmp_path)
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr and TF_STARTUP.search(done.stderr)
    last = done.stderr.splitlines()[-1]
    assert last == f"lstm-forecast windows: error: {data}:302: column 'value': not a number: 'x'"
    assert not (tmp_path / "run" / console.LOG_FILE).exists()


def test_a_data_error_in_the_pipeline_is_one_line_without_beam_details(tmp_path):
    data = small_data(tmp_path)
    data.write_text(data.read_text() + "2024-01-01,x\n")
    done = command(["windows", "--data", str(data), "--output", str(tmp_path / "run"),
                    "--frequency", "W-SAT", "--history", "8", "--season-length", "52"], tmp_path)
    assert done.returncode == 1
    # The first chunk is read before the run and is fine; the bad line is found by the pipeline.
    assert done.stderr == f"lstm-forecast windows: error: {data}:302: column 'value': not a number: 'x'\n"
    assert "  TimeSeriesExampleGen   failed" in done.stdout


def test_an_unexpected_error_is_one_line_and_its_traceback_goes_to_the_log(tmp_path, monkeypatch, capsys):
    def broken(config):
        raise ZeroDivisionError("division by zero")

    # A bug, as it would show: an exception that is no user's mistake, raised inside the command.
    monkeypatch.setattr(config_lib, "resolve_from_data", broken)
    assert cli.main(["windows", "--data", DATA, "--output", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    match = re.fullmatch(r"lstm-forecast windows: error: ZeroDivisionError: division by zero \(unexpected: the "
                         r"traceback is in (\S+)\)\n", err)
    assert match, err
    with open(match.group(1)) as f:
        assert "Traceback (most recent call last)" in f.read()
    os.unlink(match.group(1))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_and_predict_write_nothing_into_the_current_directory_nor_library_noise_on_screen(
        tmp_path, pipeline_run, model_base_path, monkeypatch, capsys):
    config, _ = pipeline_run
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "pipeline", "serve", "--model-base-path", str(model_base_path),
                               "--model-name", "co2", "--port", str(port), "--host", "127.0.0.1",
                               "--xla-cpu-compilation-enabled"], cwd=cwd, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": REPO})
    try:
        with client_lib.ForecastClient(f"127.0.0.1:{port}", "co2") as client:
            client.wait_until_ready(120)
        monkeypatch.chdir(cwd)
        assert cli.main(["predict", "--server", f"127.0.0.1:{port}", "--model-name", "co2",
                         "--series", config.data.path, "--json"]) == 0
        assert '"forecast"' in capsys.readouterr().out
    finally:
        server.terminate()
        out, err = server.communicate(timeout=30)
    assert os.listdir(cwd) == []
    # TensorFlow's lines went to a temporary log, removed when the server stopped; the server's own
    # events show.
    assert out.splitlines() == [f"serving model 'co2' from {model_base_path} on 127.0.0.1:{port}"]
    assert [line for line in err.splitlines() if NOISE.search(line)] == []
    assert re.fullmatch(r"\S+ \S+ serving version \d+ of model co2 from .+", err.splitlines()[0]), err


@pytest.mark.slow
@pytest.mark.parametrize("name, last", [("run", "report           "), ("demo", "MAE over these windows")])
def test_run_and_demo_fit_on_a_screen_log_the_libraries_and_write_nothing_into_the_current_directory(
        tmp_path, name, last):
    data, cwd, output = small_data(tmp_path, rows=700), tmp_path / "cwd", tmp_path / "out"
    cwd.mkdir()
    done = command([name, "--data", str(data), "--output", str(output), "--history", "16", "--horizon", "3",
                    "--season-length", "8", "--split-fractions", "0.6,0.2", "--scaling", "last_value",
                    "--lstm-units", "16,16", "--epochs", "2", "--max-skill", "1e6"], cwd, timeout=600)
    assert done.returncode == 0, done.stderr
    lines = (done.stdout + done.stderr).splitlines()
    assert [line for line in lines if NOISE.search(line)] == []
    assert len(lines) <= 80, "\n".join(lines)
    assert lines[-1].startswith(last)
    # Keras' epoch lines, setuptools' and TensorFlow's start-up lines went to the log.
    logged = (output / console.LOG_FILE).read_text()
    assert "Epoch 1/2" in logged and TF_STARTUP.search(logged) and "running bdist_wheel" in logged
    assert os.listdir(cwd) == []


def test_serve_on_a_port_in_use_is_one_line_naming_the_flag(tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = cli.main(["serve", "--model-base-path", str(tmp_path), "--port", str(port), "--host", "127.0.0.1"])
    assert code == 1
    assert capsys.readouterr().err == (f"lstm-forecast serve: error: --port {port}: cannot listen on 127.0.0.1:{port} "
                                       "(in use by another server?)\n")


def test_forecast_shows_its_progress_and_summary_and_no_library_noise(tmp_path, pipeline_run, model_base_path):
    config, _ = pipeline_run
    done = command(["forecast", "--model-base-path", str(model_base_path), "--data", config.data.path,
                    "--output", str(tmp_path / "forecasts.csv")], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0] == "forecast: 1 of 1 series"
    assert lines[1].startswith("forecast 1 of 1 series with ") and lines[1].endswith("forecasts.csv")
    assert [line for line in lines if NOISE.search(line)] == []
