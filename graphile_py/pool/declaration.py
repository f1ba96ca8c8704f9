"""How a setting is declared once: a dataclass field carrying its meaning and limits.

:func:`setting` makes the field; :func:`declared` reads a class's settings back, for
the class's own ``__post_init__`` check (:func:`check_declared`) and for whoever derives
other names from them (``graphile_py.settings``: config-file keys, environment
variables; ``graphile_py.cli``: flags and ``--help``).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from graphile_py.errors import ConfigurationError

__all__ = ["Declared", "Setting", "check_declared", "declared", "setting"]

_METADATA_KEY = "graphile_py.setting"


@dataclass(frozen=True, slots=True)
class Setting:
    """What one setting means and which values it accepts, beyond its type and default.

    The names outside Python derive from the setting's ``key`` (the attribute name
    unless given): the config-file key is ``key``, the environment variable
    ``GRAPHILE_PY_<KEY>`` (after any in ``env``), the flag ``--<key>`` with dashes (a
    boolean that defaults to true gets ``--no-<key>`` instead).
    """

    #: One or two sentences for ``--help`` and the docs, without a final full stop.
    help: str
    #: Numbers: the smallest allowed value.
    minimum: float | None = None
    #: Numbers: values must be greater than this.
    above: float | None = None
    #: Numbers: the largest allowed value.
    maximum: float | None = None
    #: Numbers: reject infinity (and NaN, which every number setting rejects).
    finite: bool = False
    #: Text: reject the empty string.
    nonempty: bool = False
    #: The name on the command line's settings object and in ``--flag`` handling, when
    #: it differs from the attribute (``concurrency`` is ``jobs``).
    name: str | None = None
    #: The config-file key and the ``GRAPHILE_PY_`` suffix, when it differs from ``name``.
    key: str | None = None
    #: The long flag, when it differs from ``--<key>``.
    flag: str | None = None
    #: A one-letter flag as well, e.g. ``-j``.
    short: str | None = None
    #: Environment variables read before ``GRAPHILE_PY_<KEY>``, e.g. ones shared with Node.
    env: tuple[str, ...] = ()
    #: The placeholder in ``--help`` (default: ``N`` for integers, ``SECONDS`` for floats).
    metavar: str | None = None
    #: How the default reads in ``--help`` and the docs, when not the value itself
    #: ("" shows none).
    default_help: str | None = None
    #: The setting's type, when the attribute also accepts things no file can hold
    #: (``forbidden_flags`` takes a callable too, but a setting is a list of strings).
    value_type: Any = None

    def describe(self, base: type) -> str:
        """The values allowed, in words: "at least 1", "a number of seconds > 0"."""
        if base is int:
            limits = [
                f"at least {self.minimum:g}" if self.minimum is not None else "",
                f"more than {self.above:g}" if self.above is not None else "",
                f"at most {self.maximum:g}" if self.maximum is not None else "",
            ]
            return " and ".join(limit for limit in limits if limit) or "a whole number"
        limits = [
            f">= {self.minimum:g}" if self.minimum is not None else "",
            f"> {self.above:g}" if self.above is not None else "",
            f"<= {self.maximum:g}" if self.maximum is not None else "",
        ]
        kind = "a finite number of seconds" if self.finite else "a number of seconds"
        return " ".join([kind, " and ".join(limit for limit in limits if limit)]).strip()


def setting(default: Any, **spec: Any) -> Any:
    """A dataclass field that is also a setting; ``spec`` holds :class:`Setting`'s fields."""
    return dataclasses.field(default=default, metadata={_METADATA_KEY: Setting(**spec)})


class Declared(NamedTuple):
    """One setting as a dataclass declares it: attribute, type, default and spec."""

    attribute: str
    value_type: Any
    default: Any
    spec: Setting

    @property
    def base_type(self) -> Any:
        """The type without ``None``: ``int`` for ``int | None``."""
        return _without_none(self.value_type)

    @property
    def optional(self) -> bool:
        """True when None is a value (meaning "off" or "none")."""
        return _allows_none(self.value_type)

    def check(self, value: Any) -> None:
        """Raise :class:`ConfigurationError`, naming the attribute, for a value out of limits."""
        spec, base = self.spec, self.base_type
        if value is None and self.optional:
            return
        or_off = "None (off) or " if self.optional else ""
        if base is str and spec.nonempty and not value:
            raise ConfigurationError(f"{self.attribute} must be {or_off}a non-empty string")
        if base not in (int, float) or isinstance(value, bool):
            return
        within = (
            not math.isnan(value)
            and (math.isfinite(value) or not spec.finite)
            and (spec.minimum is None or value >= spec.minimum)
            and (spec.above is None or value > spec.above)
            and (spec.maximum is None or value <= spec.maximum)
        )
        if not within:
            raise ConfigurationError(
                f"{self.attribute} must be {or_off}{spec.describe(base)}, not {value!r}"
            )


def declared(cls: type) -> tuple[Declared, ...]:
    """The settings a dataclass declares with :func:`setting`, in declaration order."""
    hints = typing.get_type_hints(cls)
    found = []
    for field in dataclasses.fields(cls):
        spec = field.metadata.get(_METADATA_KEY)
        if isinstance(spec, Setting):
            value_type = spec.value_type if spec.value_type is not None else hints[field.name]
            found.append(Declared(field.name, value_type, field.default, spec))
    return tuple(found)


def check_declared(instance: object, settings: Sequence[Declared]) -> None:
    """Check every declared setting of ``instance`` against its limits."""
    for item in settings:
        item.check(getattr(instance, item.attribute))


def _allows_none(value_type: Any) -> bool:
    return type(None) in typing.get_args(value_type)


def _without_none(value_type: Any) -> Any:
    """``int`` for ``int | None``; other types unchanged."""
    if typing.get_origin(value_type) in (typing.Union, types.UnionType):
        rest = [arg for arg in typing.get_args(value_type) if arg is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return value_type
