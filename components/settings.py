"""How a setting is declared and checked: one place for its flag, help, allowed values and range.

Each settings dataclass (:mod:`components.example_gen.options`, :mod:`components.trainer_options`,
:mod:`pipeline.config`) declares its fields with :func:`setting`, and calls :func:`check_fields`
from ``__post_init__``: an invalid value is refused when the settings are built, before any work,
with a message that names the command-line flag. The CLI builds its flags from the same
declarations (:func:`flag_of`, :func:`help_of`, :func:`choices_of`), so allowed values and help
text are written once. TensorFlow-free, like every settings module.
"""

import dataclasses
from typing import Any, Optional, Sequence

_FLAG, _HELP, _CHOICES, _MIN, _MAX, _MIN_EXCLUSIVE = "flag", "help", "choices", "min", "max", "min_exclusive"


class ConfigError(ValueError):
    """Settings that cannot work: the message names the flag and says why."""


def setting(default: Any = dataclasses.MISSING, *, help: str = "",  # noqa: A002 (argparse's own word)
            flag: Optional[str] = None, choices: Optional[Sequence[Any]] = None, minimum: Optional[float] = None,
            maximum: Optional[float] = None, above: Optional[float] = None) -> Any:
    """A dataclass field that carries its command-line flag, help text, allowed values and range.

    Args:
      default: The default value (immutable: tuples, not lists).
      help: What the setting does, as ``--help`` shows it.
      flag: The command-line flag; default: ``--`` and the field name with dashes.
      choices: The allowed values.
      minimum: The smallest allowed value (inclusive).
      maximum: The largest allowed value (inclusive).
      above: A bound the value must be strictly above.
    """
    metadata = {_HELP: help, _FLAG: flag, _CHOICES: tuple(choices) if choices is not None else None,
                _MIN: minimum, _MAX: maximum, _MIN_EXCLUSIVE: above}
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _field(cls: type, name: str) -> dataclasses.Field:
    return {f.name: f for f in dataclasses.fields(cls)}[name]


def flag_of(cls: type, name: str) -> str:
    """The command-line flag of field ``name`` of settings class ``cls``."""
    return _field(cls, name).metadata.get(_FLAG) or "--" + name.replace("_", "-")


def help_of(cls: type, name: str) -> str:
    """The help text of field ``name`` of ``cls``."""
    return _field(cls, name).metadata.get(_HELP, "")


def choices_of(cls: type, name: str) -> Optional[tuple[Any, ...]]:
    """The allowed values of field ``name`` of ``cls``, or None when any value of its type is."""
    return _field(cls, name).metadata.get(_CHOICES)


def default_of(cls: type, name: str) -> Any:
    """The default value of field ``name`` of ``cls``."""
    return _field(cls, name).default


def fail(cls: type, name: str, message: str) -> ConfigError:
    """A :class:`ConfigError` about field ``name`` of ``cls``, naming its flag."""
    return ConfigError(f"{flag_of(cls, name)} {message}")


def from_dict(cls: type, values: dict[str, Any]) -> Any:
    """A settings dataclass from :func:`dataclasses.asdict` output that went through JSON.

    JSON has no tuples: the tuple fields come back as lists, and are made tuples again.
    """
    return cls(**{name: tuple(v) if isinstance(v, list) else v for name, v in values.items()})


def check_fields(settings: Any) -> None:
    """Checks every declared choice and range of a settings dataclass instance.

    A tuple-valued field is checked item by item.

    Raises:
      ConfigError: The first field out of its choices or range, naming its flag.
    """
    cls = type(settings)
    for f in dataclasses.fields(cls):
        value = getattr(settings, f.name)
        if value is None:
            continue
        choices, low, high, above = (f.metadata.get(k) for k in (_CHOICES, _MIN, _MAX, _MIN_EXCLUSIVE))
        for item in value if isinstance(value, tuple) else (value,):
            if choices is not None and item not in choices:
                raise fail(cls, f.name, f"must be one of {', '.join(map(str, choices))}; got '{item}'")
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                continue
            if low is not None and item < low:
                raise fail(cls, f.name, f"must be at least {low:g}; got {item:g}")
            if high is not None and item > high:
                raise fail(cls, f.name, f"must be at most {high:g}; got {item:g}")
            if above is not None and item <= above:
                raise fail(cls, f.name, f"must be above {above:g}; got {item:g}")
