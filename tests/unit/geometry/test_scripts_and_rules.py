"""Script parameters read without executing, and rule sets/materials loaded against schemas."""

from __future__ import annotations

import json

import pytest

from services.design.geometry import (
    Failure,
    IngestError,
    ParameterSpec,
    Severity,
    materials,
    resolve_parameters,
    rule_sets,
    script_parameters,
)
from services.design.geometry.ruleset import RULES_DIR, parse_rule_set, validate

SCRIPT = """
import cadquery as cq

def helper(x):
    return x

def build(
    width: float = 40, holes: int = 4, chamfer: bool = True, *, label: str = "A"
) -> cq.Workplane:
    return cq.Workplane().box(width, width, 5)
"""


def test_parameters_are_read_with_types_and_defaults() -> None:
    specs = script_parameters(SCRIPT)
    assert specs == {
        "width": ParameterSpec("width", "float", 40.0),
        "holes": ParameterSpec("holes", "int", 4),
        "chamfer": ParameterSpec("chamfer", "bool", True),
        "label": ParameterSpec("label", "str", "A"),
    }
    assert isinstance(specs["width"].default, float)


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("x = 1\n", "no top-level build()"),
        ("def build(*args):\n  pass\n", "*args"),
        ("def build(w: float):\n  pass\n", "needs a default"),
        ("def build(w: list = 1):\n  pass\n", "type annotation"),
        ("def build(n: int = 2.5):\n  pass\n", "'n' is a int"),
        ("def build(n: int = True):\n  pass\n", "'n' is a int"),
        ("def build(w: float = 2 * 3):\n  pass\n", "must be a literal"),
        ("def build(:\n", "does not parse"),
    ],
)
def test_bad_declarations(source: str, words: str) -> None:
    with pytest.raises(IngestError) as caught:
        script_parameters(source)
    assert caught.value.failure is Failure.INVALID
    assert words in caught.value.reason


def test_resolve_parameters() -> None:
    specs = script_parameters(SCRIPT)
    values = resolve_parameters(specs, {"width": 12, "label": "B"})
    assert values == {"width": 12.0, "holes": 4, "chamfer": True, "label": "B"}
    with pytest.raises(IngestError, match="unknown parameter"):
        resolve_parameters(specs, {"depth": 3.0})
    with pytest.raises(IngestError, match="'holes' is a int"):
        resolve_parameters(specs, {"holes": "four"})
    with pytest.raises(IngestError, match="'width' must be a finite number"):
        resolve_parameters(specs, {"width": float("nan")})


def test_rule_sets_cover_the_processes() -> None:
    sets = rule_sets()
    assert {"cnc-milling", "fdm-printing", "sla-printing", "injection-moulding"} <= set(sets)
    for rule_set in sets.values():
        assert rule_set.default_material in materials()
        checks = {r.check for r in rule_set.rules}
        assert {"solid", "manifold", "self_intersection", "envelope", "min_wall"} <= checks
    assert sets["fdm-printing"].limits["max-overhang"] == 45.0
    assert "draft" in {r.check for r in sets["injection-moulding"].rules}
    assert "overhang" not in {r.check for r in sets["cnc-milling"].rules}
    assert sets["cnc-milling"].rules[0].severity is Severity.ERROR


def test_materials_have_densities() -> None:
    table = materials()
    assert table["aluminium-6061"].density_g_cm3 == pytest.approx(2.70)
    assert all(m.density_g_cm3 > 0 for m in table.values())


def test_schema_rejects_bad_rule_sets() -> None:
    schema = json.loads((RULES_DIR / "schema.json").read_text())
    good = json.loads((RULES_DIR / "fdm-printing.json").read_text())
    assert validate(good, schema) == []
    bad = json.loads(json.dumps(good))
    del bad["default_material"]
    bad["rules"][0]["severity"] = "fatal"
    bad["rules"][1]["limit"] = -1
    bad["rules"][2]["colour"] = "red"
    problems = validate(bad, schema)
    assert any("missing required property 'default_material'" in p for p in problems)
    assert any("$.rules[0].severity" in p and "'fatal'" in p for p in problems)
    assert any("$.rules[1].limit" in p and "minimum" in p for p in problems)
    assert any("unexpected property 'colour'" in p for p in problems)
    assert "$.id: expected string, got int" in validate({"id": 3}, schema)


def test_duplicate_rule_ids_are_refused() -> None:
    data = json.loads((RULES_DIR / "sla-printing.json").read_text())
    data["rules"].append(data["rules"][0])
    with pytest.raises(ValueError, match="repeat"):
        parse_rule_set(data)
