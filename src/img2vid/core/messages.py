"""One-line messages for an invalid request: the field, the value given, what is allowed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from pydantic.fields import FieldInfo


def describe_validation_error(exc: ValidationError, fields: Mapping[str, FieldInfo]) -> str:
    """One line naming each bad field, its value and the allowed range (from `fields`, the
    model's field infos)."""
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if not isinstance(p, int)]
        field = loc[0] if loc else ""
        given = err.get("input")
        reason = _reason(field, err, fields.get(field))
        if field and not isinstance(given, dict):
            parts.append(f"{field}={_short(given)}: {reason}")
        else:
            parts.append(reason)
    return "invalid request: " + "; ".join(parts)


def _reason(field: str, err: Any, info: FieldInfo | None) -> str:
    kind = err["type"]
    if kind in {"greater_than_equal", "less_than_equal", "greater_than", "less_than"} and info:
        bounds = {name: getattr(meta, name) for meta in info.metadata
                  for name in ("ge", "gt", "le") if getattr(meta, name, None) is not None}
        high = bounds.get("le")
        if "ge" in bounds and high is not None:
            return f"allowed range is {_number(bounds['ge'])} to {_number(high)}"
        if "gt" in bounds and high is not None:
            return f"must be more than {_number(bounds['gt'])} and at most {_number(high)}"
    if kind == "enum":
        return "allowed: " + err.get("ctx", {}).get("expected", "").replace("'", "")
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "value_error":
        return str(err["msg"]).removeprefix("Value error, ")
    if kind == "literal_error" and field == "focus":
        return "expected x,y fractions such as 0.6,0.4, or auto"
    return str(err["msg"]).lower()


def _number(value: float) -> str:
    """A bound as people write it: 1 (not 1.0 or 1e+00), 0.5, 9223372036854775807."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."
