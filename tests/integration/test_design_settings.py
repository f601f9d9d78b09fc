"""A design's validation settings are checked when they are set, not after an upload: unknown
materials, rule sets and rule overrides are INVALID_ARGUMENT naming the field and a few valid
values; ListMaterials and GetRuleSet say what is valid. Over real gRPC, SQLite and PostgreSQL."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Mapping

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from clients.cli.exits import EXIT_USAGE
from clients.cli.main import main
from clients.sdk import Cofab
from cofab.design.v1 import design_pb2
from services.design.geometry.ruleset import DATA_DIR, RULES_DIR
from tests.integration.conftest import Stack
from tests.integration.test_design_api import create_project


def violations_of(call: Callable[[], object]) -> tuple[grpc.RpcError, dict[str, str]]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    status = rpc_status.from_call(caught.value)
    found: dict[str, str] = {}
    for detail in status.details if status else ():
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            found.update({v.field: v.description for v in bad.field_violations})
    return caught.value, found


def create(
    cofab: Cofab,
    project: str,
    rule_set: str = "",
    material: str = "",
    overrides: Mapping[str, float] | None = None,
) -> design_pb2.Design:
    return cofab.designs.CreateDesign(
        design_pb2.CreateDesignRequest(
            parent=project,
            design=design_pb2.Design(
                display_name="Bracket",
                rule_set=rule_set,
                material=material,
                rule_overrides=dict(overrides or {}),
            ),
        )
    )


def test_unknown_material_rule_set_and_overrides_are_refused(stack: Stack) -> None:
    with stack.client(stack.acme) as acme:
        project = create_project(acme).name
        error, fields = violations_of(lambda: create(acme, project, material="../../x"))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        description = fields["design.material"]
        assert "'../../x' is not a material" in description
        assert "aluminium-6061" in description and "..." in description
        assert "ListMaterials" in description and "sla-resin" not in description

        _, fields = violations_of(lambda: create(acme, project, rule_set="laser-cutting"))
        assert "cnc-milling" in fields["design.rule_set"]
        assert "ListRuleSets" in fields["design.rule_set"]

        _, fields = violations_of(
            lambda: create(
                acme,
                project,
                rule_set="fdm-printing",
                overrides={"x": 1.0, "manifold": 1.0, "min-wall": -1.0, "min-hole": math.nan},
            )
        )
        assert set(fields) == {
            "design.rule_overrides[x]",
            "design.rule_overrides[manifold]",
            "design.rule_overrides[min-wall]",
            "design.rule_overrides[min-hole]",
        }
        assert "GetRuleSet(fdm-printing)" in fields["design.rule_overrides[x]"]
        assert "mm" in fields["design.rule_overrides[min-wall]"]

        # The right settings pass, and nothing was created by the refused calls.
        made = create(
            acme, project, rule_set="fdm-printing", material="petg", overrides={"min-wall": 1.2}
        )
        assert (made.rule_set, made.material, dict(made.rule_overrides)) == (
            "fdm-printing",
            "petg",
            {"min-wall": 1.2},
        )
        listed = acme.designs.ListDesigns(design_pb2.ListDesignsRequest(parent=project))
        assert [d.name for d in listed.designs] == [made.name]


def test_update_design_refuses_bad_settings_and_keeps_the_design(stack: Stack) -> None:
    with stack.client(stack.acme) as acme:
        project = create_project(acme).name
        design = create(acme, project, material="steel-1018")
        for change, field in (
            (design_pb2.Design(material="unobtainium"), "design.material"),
            (design_pb2.Design(rule_set="../etc"), "design.rule_set"),
            (
                design_pb2.Design(rule_overrides={"envelope-q": 5.0}),
                "design.rule_overrides[envelope-q]",
            ),
        ):
            change.name = design.name
            request = design_pb2.UpdateDesignRequest(
                design=change,
                update_mask=field_mask_pb2.FieldMask(
                    paths=["rule_set", "material", "rule_overrides"]
                ),
            )
            error, fields = violations_of(functools.partial(acme.designs.UpdateDesign, request))
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and field in fields
        # A change of the rule set alone is checked against the overrides the design keeps:
        # FDM printing has no mass limit.
        heavy = create(acme, project, overrides={"max-mass": 100.0})
        only_rule_set = design_pb2.UpdateDesignRequest(
            design=design_pb2.Design(name=heavy.name, rule_set="fdm-printing"),
            update_mask=field_mask_pb2.FieldMask(paths=["rule_set"]),
        )
        _, fields = violations_of(lambda: acme.designs.UpdateDesign(only_rule_set))
        assert "design.rule_overrides[max-mass]" in fields
        got = acme.designs.GetDesign(design_pb2.GetDesignRequest(name=design.name))
        assert (got.rule_set, got.material) == ("cnc-milling", "steel-1018")


def test_huge_settings_get_a_short_answer(stack: Stack) -> None:
    with stack.client(stack.acme) as acme:
        project = create_project(acme).name
        huge = "m" * 1_000_000
        for call in (
            lambda: create(acme, project, material=huge),
            lambda: create(acme, project, rule_set=huge),
        ):
            error, _ = violations_of(call)
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert len(error.details() or "") < 400
        many = {f"rule-{i}": 1.0 for i in range(1000)}
        error, fields = violations_of(lambda: create(acme, project, overrides=many))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "design.rule_overrides" in fields and len(error.details() or "") < 400


def test_materials_and_rules_are_listed_with_densities_and_limits(stack: Stack) -> None:
    # The reference values come from the data files themselves, not from the service.
    table = json.loads((DATA_DIR / "materials.json").read_text())
    cnc = json.loads((RULES_DIR / "cnc-milling.json").read_text())
    with stack.client(stack.globex) as globex:
        first = globex.designs.ListMaterials(design_pb2.ListMaterialsRequest(page_size=5))
        rest = globex.designs.ListMaterials(
            design_pb2.ListMaterialsRequest(page_token=first.next_page_token)
        )
        materials = {m.id: m.density_g_cm3 for m in [*first.materials, *rest.materials]}
        assert len(first.materials) == 5 and not rest.next_page_token
        assert materials == {k: pytest.approx(v["density_g_cm3"]) for k, v in table.items()}
        rule_set = globex.designs.GetRuleSet(design_pb2.GetRuleSetRequest(id="cnc-milling"))
        assert rule_set.default_material == cnc["default_material"]
        assert [
            (r.id, r.limit if r.HasField("limit") else None, r.unit) for r in rule_set.rules
        ] == [(r["id"], r.get("limit"), r.get("unit", "")) for r in cnc["rules"]]
        listed = globex.designs.ListRuleSets(design_pb2.ListRuleSetsRequest())
        assert rule_set in listed.rule_sets
        with pytest.raises(grpc.RpcError) as caught:
            globex.designs.GetRuleSet(design_pb2.GetRuleSetRequest(id="laser-cutting"))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_cli_lists_materials_and_rules_and_creates_with_settings(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with stack.client(stack.acme) as acme:
        project = create_project(acme).name
    monkeypatch.setenv("COFAB_TOKEN", stack.acme.token)
    monkeypatch.setenv("COFAB_DESIGN_ADDRESS", stack.design.address)
    monkeypatch.setenv("COFAB_SUPPLY_ADDRESS", stack.supply.address)
    assert main(["material", "list"]) == 0
    assert "aluminium-6061  'Aluminium 6061'  2.7 g/cm3" in capsys.readouterr().out
    assert main(["ruleset", "show", "fdm-printing"]) == 0
    assert "min-wall  min_wall  " in capsys.readouterr().out
    argv = ["design", "create", project, "Clip", "--rule-set", "fdm-printing", "--material"]
    assert main([*argv, "pla", "--override", "min-wall=1.5"]) == 0
    assert main([*argv, "gold"]) == EXIT_USAGE  # INVALID_ARGUMENT (clients/cli/exits.py)
    assert "design.material" in capsys.readouterr().err
