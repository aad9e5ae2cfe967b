"""What the command prints, kept apart from what its libraries print.

TensorFlow, TFX, Beam, Keras and setuptools write a hundred lines or more in a run: Python logging
and warnings, Keras' epoch lines on ``sys.stdout``, C++ logging on file descriptor 2, and child
processes (the module wheel's build, Beam's workers) on descriptors 1 and 2. :class:`LibraryLog`
points descriptors 1 and 2 at a log file, so all of these land there whatever their route, while
the command's own lines (progress, summary) go through :func:`say` to the terminal; its error
line is printed once the log is closed.
"""

import contextlib
import io
import os
import shutil
import sys
import tempfile
from typing import Optional, TextIO

LOG_FILE = "lstm-forecast.log"

# The terminal while a LibraryLog is active; None: sys.stdout, as usual.
_console: Optional[TextIO] = None


def stream() -> TextIO:
    """Where the command's own output goes: the terminal, even while the libraries' goes to a log."""
    return _console if _console is not None else sys.stdout


def say(*parts: object, sep: str = " ", end: str = "\n") -> None:
    """``print`` to :func:`stream`, flushed: progress must show while a run goes on."""
    print(*parts, sep=sep, end=end, file=stream(), flush=True)


def _terminal_copy(stream_: TextIO, fd: int) -> TextIO:
    """A stream to where ``stream_`` writes now, that stays there when ``fd`` is pointed elsewhere."""
    try:
        backed = stream_.fileno() == fd
    except (AttributeError, OSError, io.UnsupportedOperation):
        backed = False  # not a file (a test's capture): it is not affected by moving fd
    if not backed:
        return stream_
    return os.fdopen(os.dup(fd), "w", buffering=1, encoding=getattr(stream_, "encoding", None) or "utf-8",
                     errors="backslashreplace")


class LibraryLog(contextlib.AbstractContextManager):
    """While active, what the libraries write goes to a log file, and :func:`say` to the terminal.

    Descriptors 1 and 2 (and so ``sys.stdout``, ``sys.stderr``, Python logging's stream handlers
    and child processes) are pointed at the log. The log starts as a temporary file, since the run's
    directory may not exist yet (and a command refused for its flags must not create it);
    :meth:`move_into` moves it there once it may. A temporary log is removed at the end unless
    :meth:`keep` was called.

    Args:
      stdout: Log descriptor 1 as well as 2; without, only standard error is logged, for a command
        whose libraries print nothing on standard output (``predict``).

    Attributes:
      path: The log file now.
      terminal_stderr: While active, a stream to the terminal's standard error (for a server's own
        log lines).
    """

    def __init__(self, stdout: bool = True) -> None:
        self.path = ""
        self._fds = (1, 2) if stdout else (2,)
        self._saved: tuple[int, ...] = ()
        self._kept = False
        self.terminal_stderr: TextIO = sys.stderr

    def __enter__(self) -> "LibraryLog":
        global _console
        fd, self.path = tempfile.mkstemp(prefix="lstm-forecast-", suffix=".log")
        if 1 in self._fds:
            _console = _terminal_copy(sys.stdout, 1)
        sys.stdout.flush()
        sys.stderr.flush()
        self._saved = tuple(os.dup(n) for n in self._fds)
        self.terminal_stderr = _terminal_copy(sys.stderr, 2)
        for n in self._fds:
            os.dup2(fd, n)
        os.close(fd)
        return self

    def move_into(self, directory: str) -> str:
        """Moves the log to ``directory/lstm-forecast.log`` (creating ``directory``); returns its path.

        What was logged so far is copied; a log from an earlier run there is replaced.
        """
        os.makedirs(directory, exist_ok=True)
        target = os.path.join(directory, LOG_FILE)
        sys.stdout.flush()
        sys.stderr.flush()
        shutil.copyfile(self.path, target)
        fd = os.open(target, os.O_WRONLY | os.O_APPEND)
        for n in self._fds:
            os.dup2(fd, n)
        os.close(fd)
        os.unlink(self.path)
        self.path, self._kept = target, True
        return target

    def keep(self) -> None:
        """Keeps the temporary log when the block ends (it holds a traceback to read)."""
        self._kept = True

    def __exit__(self, *exc_info) -> None:
        global _console
        sys.stdout.flush()
        sys.stderr.flush()
        for saved, n in zip(self._saved, self._fds):
            os.dup2(saved, n)
            os.close(saved)
        if _console is not None and _console is not sys.stdout:
            _console.close()
        if self.terminal_stderr is not sys.stderr:
            self.terminal_stderr.close()
        _console = None
        if not self._kept:
            os.unlink(self.path)
