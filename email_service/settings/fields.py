"""A setting declared once: its variable, parser, default, unit and help (core)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: Milliseconds in a second: durations are given in ms and kept in seconds.
MS_PER_S = 1000


@dataclass(frozen=True)
class Variable:
    """One environment variable: its name, the field it fills (``group.field``), how to
    read it, its default (as the variable would give it), and what it means."""

    env: str
    attr: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    secret: bool = False
    unit: str = ""

    def value_of(self, raw: Any) -> Any:
        """The field's value for what ``parse`` read (milliseconds become seconds)."""
        if self.unit == "ms" and raw is not None:
            return raw / MS_PER_S
        return raw


def setting(
    env: str,
    parse: Callable[[str], Any],
    default: Any,
    help: str,
    *,
    secret: bool = False,
    unit: str = "",
) -> Any:
    """A group's field, declared with its variable (see ``Variable``)."""
    variable = Variable(env, "", parse, default, help, secret, unit)
    return field(default=variable.value_of(default), metadata={"variable": variable})


class Group:
    """A group of settings; its ``repr`` hides the secret ones."""

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}=<redacted>"
            if f.metadata["variable"].secret
            else f"{f.name}={getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
        )
        return f"{type(self).__name__}({shown})"
