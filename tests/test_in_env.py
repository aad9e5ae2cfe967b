"""tools/in-env: any path the user can read stays reachable, at the same path, inside the environment.

These run tools/in-env itself, so they run from the host, not inside the environment (where
tools/in-env runs its command as it is, without a sandbox to test), and need none of the
environment's packages: ``make test-env``, i.e. ``python3 -m pytest --noconftest tests/test_in_env.py``.
"""

import os
import shutil
import subprocess
import tempfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IN_ENV = os.path.join(REPO, "tools", "in-env")
DATA = os.path.join(REPO, "data", "co2_weekly_mlo.csv")

pytestmark = pytest.mark.skipif(os.environ.get("LSTM_FORECAST_IN_ENV") == "1",
                                reason="tests tools/in-env from the host: run `make test-env` there")

# Reads argv[1] to stdout and writes "written" to argv[2].
READ_AND_WRITE = "import sys; print(open(sys.argv[1]).read(), end=''); open(sys.argv[2], 'w').write('written')"


@pytest.fixture()
def home_dir():
    """A fresh directory under $HOME, which is neither the repository, /tmp nor the working directory."""
    path = tempfile.mkdtemp(prefix="lstm-forecast-test-", dir=os.path.expanduser("~"))
    assert not path.startswith(("/tmp/", REPO + "/"))
    yield path
    shutil.rmtree(path)


def in_env(*args, cwd=REPO):
    return subprocess.run([IN_ENV, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_a_file_under_home_can_be_read_and_written_inside(home_dir):
    with open(os.path.join(home_dir, "in.txt"), "w") as f:
        f.write("from the host\n")
    done = in_env("python", "-c", READ_AND_WRITE, os.path.join(home_dir, "in.txt"), os.path.join(home_dir, "out.txt"))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "from the host\n"
    with open(os.path.join(home_dir, "out.txt")) as f:
        assert f.read() == "written"


def test_a_file_named_under_var_can_be_read_inside():
    # /var is the root file system's own: only the directory of a path argument is bound, read-only.
    directory = tempfile.mkdtemp(prefix="lstm-forecast-test-", dir="/var/tmp")
    try:
        path = os.path.join(directory, "in.txt")
        with open(path, "w") as f:
            f.write("from /var\n")
        done = in_env("python", "-c", "import sys; print(open(sys.argv[1].split('=', 1)[1]).read(), end='')",
                      f"--data={path}")
        assert done.returncode == 0, done.stderr
        assert done.stdout == "from /var\n"
    finally:
        shutil.rmtree(directory)


def test_the_command_reads_data_and_writes_its_run_under_home(home_dir):
    data = os.path.join(home_dir, "co2.csv")
    with open(DATA) as src, open(data, "w") as dst:
        dst.write("".join(line for _, line in zip(range(301), src)))
    output = os.path.join(home_dir, "run")
    done = in_env("lstm-forecast", "windows", "--data", data, "--output", output, cwd=home_dir)
    assert done.returncode == 0, done.stderr
    assert "windows          train" in done.stdout
    assert os.path.exists(os.path.join(output, "lstm-forecast.log"))
