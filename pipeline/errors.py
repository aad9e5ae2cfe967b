"""Errors the ``lstm-forecast`` command reports as one line: defined apart, so reporting one loads nothing heavy."""


class DemoError(RuntimeError):
    """The demo could not complete; the message says at which step."""


class InputError(ValueError):
    """A file the user gave cannot be used as it is; the message names the file, the place and what is wrong."""
