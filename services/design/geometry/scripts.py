"""A CadQuery script's declared parameters, read by parsing (never executing) its source.

Convention: the script defines a top-level `build` function whose parameters are all keyword
parameters with a type annotation (`float`, `int`, `bool` or `str`) and a literal default of
that type, and which returns a cadquery Workplane or Shape:

    import cadquery as cq

    def build(width: float = 40.0, holes: int = 4, chamfer: bool = True) -> cq.Workplane:
        ...

`*args`, `**kwargs`, positional-only parameters and missing annotations or defaults are refused,
so that every revision's parameters can be validated at push time and recorded with their values.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping

from services.design.geometry.types import Failure, IngestError, ParameterSpec, ParameterValue

_TYPES: dict[str, type] = {"float": float, "int": int, "bool": bool, "str": str}
MAX_SCRIPT_BYTES = 1024 * 1024


def _invalid(reason: str) -> IngestError:
    return IngestError(Failure.INVALID, reason)


def script_parameters(source: str) -> dict[str, ParameterSpec]:
    """The parameters `build()` declares, in order; IngestError(INVALID) if the script does not
    parse or does not follow the convention."""
    if len(source.encode()) > MAX_SCRIPT_BYTES:
        raise IngestError(Failure.TOO_LARGE, f"the script is over {MAX_SCRIPT_BYTES} bytes")
    try:
        tree = ast.parse(source, filename="design.py")
    except SyntaxError as exc:
        raise _invalid(f"the script does not parse: {exc.msg} (line {exc.lineno})") from None
    except ValueError as exc:  # null bytes
        raise _invalid(f"the script does not parse: {exc}") from None
    builds = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "build"]
    if not builds:
        raise _invalid("the script defines no top-level build() function")
    args = builds[-1].args
    if args.vararg or args.kwarg or args.posonlyargs:
        raise _invalid("build() may take only named parameters (no *args, **kwargs or '/')")
    specs: dict[str, ParameterSpec] = {}
    positional_defaults = [None] * (len(args.args) - len(args.defaults)) + list(args.defaults)
    pairs = list(zip(args.args, positional_defaults, strict=True))
    pairs += list(zip(args.kwonlyargs, args.kw_defaults, strict=True))
    for arg, default in pairs:
        specs[arg.arg] = _spec(arg, default)
    return specs


def _spec(arg: ast.arg, default: ast.expr | None) -> ParameterSpec:
    name = arg.arg
    annotation = arg.annotation
    type_name = annotation.id if isinstance(annotation, ast.Name) else None
    if type_name is None and isinstance(annotation, ast.Constant):
        type_name = annotation.value if isinstance(annotation.value, str) else None
    if type_name not in _TYPES:
        raise _invalid(
            f"parameter {name!r} of build() needs a type annotation: float, int, bool or str"
        )
    if default is None:
        raise _invalid(f"parameter {name!r} of build() needs a default value")
    try:
        value = ast.literal_eval(default)
    except ValueError:
        raise _invalid(f"the default of parameter {name!r} must be a literal") from None
    return ParameterSpec(name=name, type=type_name, default=_coerce(name, type_name, value))


def _coerce(name: str, type_name: str, value: object) -> ParameterValue:
    # bool is an int in Python; keep the two apart so `holes: int = True` is refused.
    if type_name == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise _invalid(f"parameter {name!r} must be a finite number, not {value!r}")
        return float(value)
    if type_name == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if type_name == "bool" and isinstance(value, bool):
        return value
    if type_name == "str" and isinstance(value, str):
        return value
    raise _invalid(f"parameter {name!r} is a {type_name}; {value!r} is not")


def resolve_parameters(
    specs: Mapping[str, ParameterSpec], values: Mapping[str, ParameterValue]
) -> dict[str, ParameterValue]:
    """The values to build with: given ones checked against their declared type, defaults for
    the rest; IngestError(INVALID) naming an unknown parameter or a value of the wrong type."""
    unknown = sorted(set(values) - set(specs))
    if unknown:
        raise _invalid(
            f"unknown parameter(s) {', '.join(unknown)}; build() declares "
            f"{', '.join(specs) or 'none'}"
        )
    return {
        name: _coerce(name, spec.type, values[name]) if name in values else spec.default
        for name, spec in specs.items()
    }
