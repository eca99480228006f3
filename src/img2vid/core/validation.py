"""A pydantic ValidationError as one line: every model the user fills (the request, the
config file, the server's flags, interpolate's options) reports bad values the same way."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo


def one_line(exc: ValidationError, model: type[BaseModel], *, subject: str = "",
             values: bool = True, key_prefix: str = "") -> str:
    """Each bad field with what is allowed, e.g. `invalid request: fps=0: allowed range is
    1 to 120`. `values` shows the value given (a config file's keys are named without it);
    `key_prefix` "--" names fields as the CLI's flags."""
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if not isinstance(p, int)]
        key = key_prefix + ".".join(loc)
        given = err.get("input")
        reason = _reason(_field(model, loc), loc[-1] if loc else "", err)
        if not loc:
            parts.append(reason)
        elif err["type"] == "extra_forbidden" and not values:
            parts.append(f"unknown key '{key}'")
        elif values and not isinstance(given, dict):
            parts.append(f"{key}={_short(given)}: {reason}")
        else:
            parts.append(f"{key}: {reason}")
    line = "; ".join(parts)
    return f"{subject}: {line}" if subject else line


def _field(model: type[BaseModel], loc: list[str]) -> FieldInfo | None:
    """The field `loc` names, through nested models (config sections)."""
    info = None
    for name in loc:
        info = model.model_fields.get(name)
        if info is None:
            return None
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            model = info.annotation
    return info


def _reason(info: FieldInfo | None, field: str, err: dict[str, Any]) -> str:
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
