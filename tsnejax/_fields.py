"""Declared validation for frozen config dataclasses: each field names its check once."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

__all__ = ["field", "validate_fields", "is_dynamic"]


def field(default: Any, check: Callable[[str, Any], Any] | None = None, *, dynamic: bool = False):
    """A dataclass field with a host check ``check(name, value)`` (raising ``ValueError``).

    ``dynamic=True`` marks a value that does not shape the compiled step: it reaches the run
    as data (a phase value, the affinities, the initial embedding), so trials differing only
    in dynamic fields share one program.
    """
    return dataclasses.field(default=default, metadata={"check": check, "dynamic": dynamic})


def validate_fields(obj: Any, prefix: str = "") -> Any:
    """Run every declared check of ``obj``'s fields; returns ``obj``."""
    for f in dataclasses.fields(obj):
        check = f.metadata.get("check")
        if check is not None:
            check(prefix + f.name, getattr(obj, f.name))
    return obj


def is_dynamic(f: dataclasses.Field) -> bool:
    return bool(f.metadata.get("dynamic", False))
