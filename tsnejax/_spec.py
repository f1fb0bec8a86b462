"""The one parser of ``"name:key=value,..."`` specs (optimizers and gradient methods), used by
the estimator, the command line and sweep specs."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from tsnejax._checks import check_option

__all__ = ["parse_spec"]


def parse_spec(spec: str, what: str, choices: Iterable[str]) -> tuple[str, dict[str, Any]]:
    """``"adam:learning_rate=2,b1=0.8"`` -> ``("adam", {"learning_rate": 2.0, "b1": 0.8})``.

    Values are JSON (numbers, ``true``/``false``, ``null``, quoted strings). Raises
    ``ValueError`` naming ``what`` on a malformed item or a name not in ``choices``.
    """
    if not isinstance(spec, str):
        raise ValueError(f"{what} spec must be a string, got {type(spec).__name__}.")
    name, _, rest = spec.partition(":")
    choices = tuple(choices)
    try:
        check_option(what, name.strip(), choices)
    except ValueError as err:  # e.g. "adam(b1=0.5)": say where arguments go
        stem = re.match(r"\w*", name.strip()).group(0)
        example = stem if stem in choices else choices[0]
        raise ValueError(f"{err} Arguments follow a colon: '{example}:key=value,...'.") from None
    kwargs: dict[str, Any] = {}
    for item in filter(None, (x.strip() for x in rest.split(","))):
        key, eq, value = item.partition("=")
        try:
            if not eq or not key.strip():
                raise ValueError
            kwargs[key.strip()] = json.loads(value)
        except ValueError:
            raise ValueError(
                f"{what} spec {spec!r}: {item!r} is not key=value with a JSON value "
                f"(e.g. {name.strip()}:key=2)."
            ) from None
    return name.strip(), kwargs
