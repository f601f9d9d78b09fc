"""Rule sets and the material density table: JSON data files checked against JSON schemas.

Rule sets live in `rules/<id>.json` (schema `rules/schema.json`), materials in `materials.json`
(schema `materials.schema.json`). The validator below implements the part of JSON Schema those
schemas use (type, required, properties, additionalProperties, propertyNames, enum, pattern,
minLength, minItems, minProperties, minimum, exclusiveMinimum, items): jsonschema is not a
dependency of the project.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from services.design.geometry.types import Material, Rule, RuleSet, Severity

DATA_DIR = Path(__file__).parent
RULES_DIR = DATA_DIR / "rules"
CHECKS = (
    "solid",
    "manifold",
    "self_intersection",
    "envelope",
    "mass",
    "min_wall",
    "overhang",
    "draft",
    "min_hole",
    "small_feature",
    "interference",
)

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
}


class SchemaError(ValueError):
    """A data file does not match its schema; the message names the file and the JSON path."""


def validate(instance: Any, schema: Mapping[str, Any], path: str = "$") -> list[str]:
    """The schema violations of `instance`, each as "<json path>: <problem>" (empty if valid)."""
    errors: list[str] = []
    expected = schema.get("type")
    if expected is not None:
        ok = isinstance(instance, _TYPES[expected]) and not (
            expected in ("number", "integer") and isinstance(instance, bool)
        )
        if not ok:
            return [f"{path}: expected {expected}, got {type(instance).__name__}"]
    if "enum" in schema and instance not in schema["enum"]:
        errors.append(f"{path}: {instance!r} is not one of {schema['enum']}")
    if isinstance(instance, str):
        if len(instance) < schema.get("minLength", 0):
            errors.append(f"{path}: shorter than {schema['minLength']} characters")
        if "pattern" in schema and not re.search(schema["pattern"], instance):
            errors.append(f"{path}: {instance!r} does not match {schema['pattern']}")
    if isinstance(instance, (int, float)) and not isinstance(instance, bool):
        if "minimum" in schema and instance < schema["minimum"]:
            errors.append(f"{path}: {instance} is below the minimum {schema['minimum']}")
        if "exclusiveMinimum" in schema and instance <= schema["exclusiveMinimum"]:
            errors.append(f"{path}: {instance} must be above {schema['exclusiveMinimum']}")
    if isinstance(instance, list):
        if len(instance) < schema.get("minItems", 0):
            errors.append(f"{path}: fewer than {schema['minItems']} items")
        if "items" in schema:
            for i, item in enumerate(instance):
                errors += validate(item, schema["items"], f"{path}[{i}]")
    if isinstance(instance, dict):
        errors += _validate_object(instance, schema, path)
    return errors


def _validate_object(instance: dict[str, Any], schema: Mapping[str, Any], path: str) -> list[str]:
    errors: list[str] = []
    if len(instance) < schema.get("minProperties", 0):
        errors.append(f"{path}: fewer than {schema['minProperties']} properties")
    for name in schema.get("required", ()):
        if name not in instance:
            errors.append(f"{path}: missing required property {name!r}")
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for name, value in instance.items():
        if "propertyNames" in schema:
            errors += validate(name, schema["propertyNames"], f"{path}.{name} (name)")
        if name in properties:
            errors += validate(value, properties[name], f"{path}.{name}")
        elif extra is False:
            errors.append(f"{path}: unexpected property {name!r}")
        elif isinstance(extra, dict):
            errors += validate(value, extra, f"{path}.{name}")
    return errors


def _load_checked(path: Path, schema_path: Path) -> Any:
    data = json.loads(path.read_text())
    problems = validate(data, json.loads(schema_path.read_text()))
    if problems:
        raise SchemaError(f"{path.name}: " + "; ".join(problems))
    return data


def parse_rule_set(data: Mapping[str, Any]) -> RuleSet:
    """A RuleSet from an already schema-checked mapping."""
    rules = tuple(
        Rule(
            id=r["id"],
            check=r["check"],
            severity=Severity(r["severity"]),
            description=r["description"],
            limit=float(r["limit"]) if "limit" in r else None,
            unit=r.get("unit", ""),
            axis=r.get("axis"),
        )
        for r in data["rules"]
    )
    ids = [r.id for r in rules]
    if len(set(ids)) != len(ids):
        raise SchemaError(f"{data['id']}: rule ids repeat")
    return RuleSet(
        id=data["id"],
        display_name=data["display_name"],
        process=data["process"],
        description=data["description"],
        default_material=data["default_material"],
        rules=rules,
    )


@cache
def rule_sets() -> Mapping[str, RuleSet]:
    """Every rule set shipped with the engine, by id; each file is checked against the schema."""
    schema = RULES_DIR / "schema.json"
    found: dict[str, RuleSet] = {}
    known = materials()
    for path in sorted(RULES_DIR.glob("*.json")):
        if path == schema:
            continue
        rule_set = parse_rule_set(_load_checked(path, schema))
        if rule_set.id != path.stem:
            raise SchemaError(f"{path.name}: id {rule_set.id!r} differs from the file name")
        if rule_set.default_material not in known:
            raise SchemaError(
                f"{path.name}: unknown default material {rule_set.default_material!r}"
            )
        found[rule_set.id] = rule_set
    return found


@cache
def materials() -> Mapping[str, Material]:
    """The material density table, by id."""
    data = _load_checked(DATA_DIR / "materials.json", DATA_DIR / "materials.schema.json")
    return {
        key: Material(
            id=key, display_name=v["display_name"], density_g_cm3=float(v["density_g_cm3"])
        )
        for key, v in data.items()
    }
