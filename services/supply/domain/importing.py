"""Bulk import and export of an organization's network data: the row formats, and the full
validation of an import against what the database already holds. Plain Python, no I/O.

An import is all or nothing: `plan_import` checks every row (syntax, values, references,
duplicates, bill-of-materials cycles) and reports every problem with its line number before the
caller writes anything. Rows are keyed by their ids, so importing the same rows twice plans no
change the second time.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from services.shared.errors import FieldViolation, InvalidArgument
from services.supply.domain.model import Facility, check_facility
from services.supply.domain.resources import (
    ACTIVE,
    FACILITY_ID_MAX,
    PROPOSED,
    Capability,
    Item,
    SupplyEdge,
    bom_line_problems,
    capability_problems,
    check_id,
    edge_problems,
    find_cycle,
    item_problems,
    raise_if,
)

CSV = "csv"
JSON_LINES = "jsonl"

KINDS = ("facility", "capability", "item", "bom", "edge")
COLUMNS: dict[str, tuple[str, ...]] = {
    "facility": ("id", "display_name", "region", "country_code", "latitude", "longitude"),
    "capability": (
        "id",
        "facility",
        "process",
        "materials",
        "monthly_capacity",
        "certifications",
    ),
    "item": (
        "id",
        "display_name",
        "part_number",
        "end_item",
        "unit_revenue",
        "weekly_demand",
        "inventory_weeks",
        "design",
        "revision",
        "process",
        "material",
    ),
    "bom": ("parent", "component", "quantity"),
    "edge": (
        "id",
        "facility",
        "item",
        "customer",
        "lead_time_days",
        "unit_price",
        "share",
        "monthly_volume",
    ),
}
# Every column of every kind, in one CSV header.
ALL_COLUMNS: tuple[str, ...] = ("kind",) + tuple(
    dict.fromkeys(c for kind in KINDS for c in COLUMNS[kind])
)
REQUIRED: dict[str, frozenset[str]] = {
    "facility": frozenset(
        {"id", "display_name", "region", "country_code", "latitude", "longitude"}
    ),
    "capability": frozenset({"id", "facility", "process", "monthly_capacity"}),
    "item": frozenset({"id", "display_name"}),
    "bom": frozenset({"parent", "component", "quantity"}),
    "edge": frozenset({"id", "facility", "item", "customer"}),
}
_FLOATS = frozenset(
    {
        "latitude",
        "longitude",
        "monthly_capacity",
        "unit_revenue",
        "weekly_demand",
        "inventory_weeks",
        "quantity",
        "lead_time_days",
        "unit_price",
        "share",
        "monthly_volume",
    }
)
_LISTS = frozenset({"materials", "certifications"})
_BOOLS = frozenset({"end_item"})
MAX_ROWS = 1_000_000


@dataclass(frozen=True)
class Row:
    """One parsed row: its 1-based line number in the uploaded content, kind and typed values."""

    line: int
    kind: str
    values: Mapping[str, Any]

    def where(self, column: str) -> str:
        return f"rows[{self.line}].{column}"

    def text(self, column: str) -> str:
        return str(self.values.get(column, ""))

    def number(self, column: str) -> float:
        return float(self.values.get(column, 0.0))

    def strings(self, column: str) -> tuple[str, ...]:
        return tuple(self.values.get(column, ()))


def _convert(line: int, column: str, raw: Any, problems: list[FieldViolation]) -> Any:
    where = f"rows[{line}].{column}"
    if column in _FLOATS:
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            problems.append(FieldViolation(where, f"{raw!r} is not a number"))
            return 0.0
        try:
            value = float(raw)
        except ValueError:
            problems.append(FieldViolation(where, f"{raw!r} is not a number"))
            return 0.0
        if not math.isfinite(value):
            problems.append(FieldViolation(where, f"{raw!r} is not a finite number"))
        return value
    if column in _LISTS:
        if isinstance(raw, str):
            return tuple(sorted({part.strip() for part in raw.split(";") if part.strip()}))
        if isinstance(raw, list) and all(isinstance(v, str) for v in raw):
            return tuple(sorted(set(raw)))
        problems.append(FieldViolation(where, "must be a list of strings (';'-separated in CSV)"))
        return ()
    if column in _BOOLS:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in ("true", "false", "1", "0"):
            return raw.strip().lower() in ("true", "1")
        problems.append(FieldViolation(where, f"{raw!r} is not true or false"))
        return False
    if not isinstance(raw, str):
        problems.append(FieldViolation(where, f"{raw!r} is not a string"))
        return ""
    return raw


def _row(line: int, fields: Mapping[str, Any], problems: list[FieldViolation]) -> Row | None:
    kind = fields.get("kind")
    if kind not in KINDS:
        problems.append(
            FieldViolation(f"rows[{line}].kind", f"{kind!r} is not one of {', '.join(KINDS)}")
        )
        return None
    allowed = set(COLUMNS[kind])
    values: dict[str, Any] = {}
    for column, raw in fields.items():
        if column == "kind" or raw is None or raw == "":
            continue
        if column not in allowed:
            problems.append(
                FieldViolation(f"rows[{line}].{column}", f"is not a column of a {kind} row")
            )
            continue
        values[column] = _convert(line, column, raw, problems)
    for column in sorted(REQUIRED[kind] - values.keys()):
        problems.append(FieldViolation(f"rows[{line}].{column}", f"is required in a {kind} row"))
    return Row(line, kind, values)


def parse_rows(fmt: str, content: bytes) -> tuple[list[Row], list[FieldViolation]]:
    """Parses CSV (a header line, then rows) or JSON lines. Problems of single rows (syntax,
    types, missing columns) are returned, each naming its line, so that `plan_import` reports
    them together with the rest; a bad header or format raises at once."""
    problems: list[FieldViolation] = []
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidArgument.field("chunk", f"content is not UTF-8: {exc.reason}") from None
    rows: list[Row] = []
    if fmt == CSV:
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            header = next(reader, None)
            if header is None:
                return [], []
            unknown = [c for c in header if c not in ALL_COLUMNS]
            if "kind" not in header or unknown:
                raise InvalidArgument.field(
                    "rows[1]",
                    f"the CSV header must name 'kind' and known columns; unknown: {unknown}",
                )
            for record in reader:
                line = reader.line_num
                if not any(cell.strip() for cell in record):
                    continue
                if len(record) != len(header):
                    problems.append(
                        FieldViolation(
                            f"rows[{line}]", f"has {len(record)} cells, the header {len(header)}"
                        )
                    )
                    continue
                row = _row(line, dict(zip(header, record, strict=True)), problems)
                if row is not None:
                    rows.append(row)
        except csv.Error as exc:
            problems.append(FieldViolation(f"rows[{reader.line_num}]", f"bad CSV: {exc}"))
    elif fmt == JSON_LINES:
        for line, raw_line in enumerate(text.splitlines(), start=1):
            if not raw_line.strip():
                continue
            try:
                fields = json.loads(raw_line)
            except json.JSONDecodeError as exc:
                problems.append(FieldViolation(f"rows[{line}]", f"bad JSON: {exc.msg}"))
                continue
            if not isinstance(fields, dict):
                problems.append(FieldViolation(f"rows[{line}]", "must be a JSON object"))
                continue
            row = _row(line, fields, problems)
            if row is not None:
                rows.append(row)
    else:
        raise InvalidArgument.field("header.format", "must be NETWORK_FORMAT_CSV or _JSON_LINES")
    if len(rows) > MAX_ROWS:
        raise InvalidArgument.field("rows", f"at most {MAX_ROWS} rows per import")
    return rows, problems


@dataclass
class Existing:
    """What the database holds for the ids an import mentions (see `referenced_ids`)."""

    organizations: set[str] = field(default_factory=set)
    facilities: dict[str, Facility] = field(default_factory=dict)
    capabilities: dict[str, Capability] = field(default_factory=dict)
    items: dict[str, Item] = field(default_factory=dict)
    edges: dict[str, SupplyEdge] = field(default_factory=dict)
    # Proposals of edges with another organization (any state), by id.
    proposals: dict[str, SupplyEdge] = field(default_factory=dict)
    # Every bill of materials line of the platform, parent -> {component: quantity}: a cycle
    # may run through other organizations' items (components an organization buys).
    bom: dict[str, dict[str, float]] = field(default_factory=dict)
    # Items the importing organization buys (edges where it is the customer): components it
    # may list in its bills of materials besides its own items.
    bought: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class References:
    organizations: frozenset[str]
    facilities: frozenset[str]
    capabilities: frozenset[str]
    items: frozenset[str]
    edges: frozenset[str]


def _reference(value: str, collection: str) -> tuple[str | None, str]:
    """(organization, id) of an edge row's facility or item: a bare id is the importer's own
    (organization None); another organization's is named `organizations/{o}/{collection}/{id}`."""
    parts = value.split("/")
    if len(parts) == 4 and parts[0] == "organizations" and parts[2] == collection:
        return parts[1], parts[3]
    return None, value


def referenced_ids(rows: Iterable[Row]) -> References:
    """Every id the rows define or point at, so the caller loads just those."""
    orgs, facilities, capabilities, items, edges = set(), set(), set(), set(), set()
    for row in rows:
        if row.kind == "facility":
            facilities.add(row.text("id"))
        elif row.kind == "capability":
            capabilities.add(row.text("id"))
            facilities.add(row.text("facility"))
        elif row.kind == "item":
            items.add(row.text("id"))
        elif row.kind == "bom":
            items.update((row.text("parent"), row.text("component")))
        else:
            edges.add(row.text("id"))
            # Another organization's facility or item is named in full and not looked up.
            facility_ref = _reference(row.text("facility"), "facilities")
            item_ref = _reference(row.text("item"), "items")
            if facility_ref[0] is None:
                facilities.add(facility_ref[1])
            else:
                orgs.add(facility_ref[0])
            if item_ref[0] is None:
                items.add(item_ref[1])
            orgs.add(row.text("customer"))
    return References(
        frozenset(orgs),
        frozenset(facilities),
        frozenset(capabilities),
        frozenset(items),
        frozenset(edges),
    )


@dataclass
class KindCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0


@dataclass
class ImportPlan:
    """The writes an import needs; empty lists when re-importing the same rows."""

    facilities: list[tuple[Facility, bool]] = field(default_factory=list)  # (value, is_new)
    capabilities: list[tuple[Capability, bool]] = field(default_factory=list)
    items: list[tuple[Item, bool]] = field(default_factory=list)
    bom_lines: list[tuple[str, str, float, bool]] = field(default_factory=list)
    edges: list[tuple[SupplyEdge, bool]] = field(default_factory=list)
    # Edges with another organization: proposals until it confirms (value, is_new).
    proposals: list[tuple[SupplyEdge, bool]] = field(default_factory=list)
    counts: dict[str, KindCounts] = field(default_factory=lambda: {k: KindCounts() for k in KINDS})

    @property
    def changed(self) -> bool:
        return any(c.created or c.updated for c in self.counts.values())

    def count(self, kind: str, existed: bool, same: bool) -> bool:
        """Counts one row; True when it must be written."""
        counts = self.counts[kind]
        if not existed:
            counts.created += 1
        elif same:
            counts.unchanged += 1
        else:
            counts.updated += 1
        return not (existed and same)


def _same_facility(a: Facility, b: Facility) -> bool:
    return (a.display_name, a.region, a.country_code, a.latitude, a.longitude) == (
        b.display_name,
        b.region,
        b.country_code,
        b.latitude,
        b.longitude,
    )


def plan_import(
    organization_id: str,
    rows: list[Row],
    existing: Existing,
    now: dt.datetime,
    parse_problems: Iterable[FieldViolation] = (),
) -> ImportPlan:
    """Validates every row against the file and `existing`; raises InvalidArgument naming each
    bad row (with `parse_problems`), or returns what to write. References are bare ids
    (facility, item, organization)."""
    problems: list[FieldViolation] = list(parse_problems)
    plan = ImportPlan()
    first_line: dict[tuple[str, str], int] = {}
    new_facilities: dict[str, str] = {}  # id -> organization, from this file
    new_items: dict[str, str] = {}

    def duplicate(row: Row, key: str, column: str) -> bool:
        seen = first_line.setdefault((row.kind, key), row.line)
        if seen != row.line:
            problems.append(
                FieldViolation(
                    row.where(column), f"duplicate {row.kind} {key!r}, first on line {seen}"
                )
            )
            return True
        return False

    def taken(row: Row, owner: str | None) -> bool:
        if owner is not None and owner != organization_id:
            problems.append(
                FieldViolation(row.where("id"), f"{row.text('id')!r} is already used elsewhere")
            )
            return True
        return False

    # Definitions first, so references may point at rows anywhere in the file.
    for row in rows:
        if row.kind == "facility":
            fid = row.text("id")
            problems.extend(check_id(fid, row.where("id"), FACILITY_ID_MAX))
            current = existing.facilities.get(fid)
            if duplicate(row, fid, "id") or taken(
                row, current.organization_id if current else None
            ):
                continue
            new_facilities[fid] = organization_id
        elif row.kind == "item":
            iid = row.text("id")
            problems.extend(check_id(iid, row.where("id")))
            current_item = existing.items.get(iid)
            if duplicate(row, iid, "id") or taken(
                row, current_item.organization_id if current_item else None
            ):
                continue
            new_items[iid] = organization_id

    def own_facility(fid: str) -> bool:
        if fid in new_facilities:
            return True
        facility = existing.facilities.get(fid)
        return facility is not None and facility.organization_id == organization_id

    def own_item(iid: str) -> bool:
        if iid in new_items:
            return True
        item = existing.items.get(iid)
        return item is not None and item.organization_id == organization_id

    # Only agreed edges make an item bought: a proposal in this file is not one yet.
    bought = set(existing.bought)
    bom = {parent: dict(lines) for parent, lines in existing.bom.items()}
    bom_line_of: dict[tuple[str, str], int] = {}
    for row in rows:
        if row.kind == "facility":
            _plan_facility(organization_id, row, existing, plan, problems, now)
        elif row.kind == "item":
            _plan_item(organization_id, row, existing, plan, problems)
        elif row.kind == "capability":
            cid, fid = row.text("id"), row.text("facility")
            problems.extend(check_id(cid, row.where("id")))
            current_cap = existing.capabilities.get(cid)
            if duplicate(row, cid, "id") or taken(
                row, current_cap.organization_id if current_cap else None
            ):
                continue
            if not own_facility(fid):
                problems.append(
                    FieldViolation(row.where("facility"), f"{fid!r} is not one of your facilities")
                )
            found = capability_problems(
                f"rows[{row.line}].",
                row.text("process"),
                row.strings("materials"),
                row.number("monthly_capacity"),
                row.strings("certifications"),
            )
            problems.extend(found)
            capability = Capability(
                cid,
                organization_id,
                fid,
                row.text("process"),
                row.strings("materials"),
                row.number("monthly_capacity"),
                row.strings("certifications"),
            )
            if plan.count("capability", current_cap is not None, current_cap == capability):
                plan.capabilities.append((capability, current_cap is None))
        elif row.kind == "bom":
            parent, component = row.text("parent"), row.text("component")
            if duplicate(row, f"{parent}>{component}", "component"):
                continue
            if not own_item(parent):
                problems.append(
                    FieldViolation(row.where("parent"), f"{parent!r} is not one of your items")
                )
            if not (own_item(component) or component in bought):
                problems.append(
                    FieldViolation(
                        row.where("component"),
                        f"{component!r} is neither one of your items nor one you buy",
                    )
                )
            problems.extend(
                bom_line_problems(f"rows[{row.line}].", parent, component, row.number("quantity"))
            )
            previous = bom.get(parent, {}).get(component)
            quantity = row.number("quantity")
            bom.setdefault(parent, {})[component] = quantity
            bom_line_of[(parent, component)] = row.line
            if plan.count("bom", previous is not None, previous == quantity):
                plan.bom_lines.append((parent, component, quantity, previous is None))
        elif row.kind == "edge":
            _plan_edge(organization_id, row, existing, plan, problems, new_facilities, new_items)
            duplicate(row, row.text("id"), "id")

    cycle = find_cycle(bom)
    if cycle is not None:
        # Blame the last line of the file on the cycle: the one that closed it.
        line = max(
            (
                bom_line_of[(a, b)]
                for a, b in zip(cycle, cycle[1:], strict=False)
                if (a, b) in bom_line_of
            ),
            default=0,
        )
        problems.append(
            FieldViolation(
                f"rows[{line}].component",
                "closes a cycle in the bill of materials: " + " -> ".join(cycle),
            )
        )
    raise_if(problems)
    return plan


def _plan_facility(
    organization_id: str,
    row: Row,
    existing: Existing,
    plan: ImportPlan,
    problems: list[FieldViolation],
    now: dt.datetime,
) -> None:
    try:
        check_facility(
            row.text("display_name"),
            row.text("region"),
            row.text("country_code"),
            row.number("latitude"),
            row.number("longitude"),
        )
    except InvalidArgument as error:
        problems.extend(
            FieldViolation(row.where(v.field.removeprefix("facility.")), v.description)
            for v in error.violations
        )
    current = existing.facilities.get(row.text("id"))
    facility = Facility(
        row.text("id"),
        organization_id,
        row.text("display_name").strip(),
        row.text("region"),
        row.text("country_code"),
        row.number("latitude"),
        row.number("longitude"),
        current.create_time if current is not None else now,
    )
    same = current is not None and _same_facility(current, facility)
    if plan.count("facility", current is not None, same):
        plan.facilities.append((facility, current is None))


def _plan_item(
    organization_id: str,
    row: Row,
    existing: Existing,
    plan: ImportPlan,
    problems: list[FieldViolation],
) -> None:
    problems.extend(
        item_problems(
            f"rows[{row.line}].",
            row.text("display_name"),
            row.text("part_number"),
            row.number("unit_revenue"),
            row.number("weekly_demand"),
            row.number("inventory_weeks"),
            row.text("design"),
            row.text("revision"),
            row.text("process"),
            row.text("material"),
        )
    )
    current = existing.items.get(row.text("id"))
    item = Item(
        row.text("id"),
        organization_id,
        row.text("display_name").strip(),
        row.text("part_number"),
        bool(row.values.get("end_item", False)),
        row.number("unit_revenue"),
        row.number("weekly_demand"),
        row.number("inventory_weeks"),
        row.text("design"),
        row.text("revision"),
        row.text("process"),
        row.text("material"),
    )
    same = current is not None and current.without_components() == item
    if plan.count("item", current is not None, same):
        plan.items.append((item, current is None))


def _plan_edge(
    organization_id: str,
    row: Row,
    existing: Existing,
    plan: ImportPlan,
    problems: list[FieldViolation],
    new_facilities: Mapping[str, str],
    new_items: Mapping[str, str],
) -> None:
    """An edge row. Within the organization it is an edge at once; with another organization
    (whose facility or item is named in full, `organizations/{o}/...`) it is a proposal that
    organization confirms, and nothing of it is looked up here (so an import tells nothing about
    another organization's ids)."""
    eid, customer = row.text("id"), row.text("customer")
    problems.extend(check_id(eid, row.where("id")))
    supplier, fid = _reference(row.text("facility"), "facilities")
    item_owner, iid = _reference(row.text("item"), "items")
    supplier = supplier or organization_id
    item_owner = item_owner or organization_id
    current = existing.edges.get(eid) or existing.proposals.get(eid)
    if current is not None and current.owner_id != organization_id:
        problems.append(FieldViolation(row.where("id"), f"{eid!r} is already used elsewhere"))
        return
    if supplier == organization_id and not (
        fid in new_facilities
        or (
            fid in existing.facilities
            and existing.facilities[fid].organization_id == organization_id
        )
    ):
        problems.append(
            FieldViolation(
                row.where("facility"),
                f"facility {fid!r} is not one of yours; name another organization's facility "
                "as organizations/{o}/facilities/{f}",
            )
        )
    if item_owner == organization_id and not (
        iid in new_items
        or (iid in existing.items and existing.items[iid].organization_id == organization_id)
    ):
        problems.append(
            FieldViolation(
                row.where("item"),
                f"item {iid!r} is not one of yours; name another organization's item as "
                "organizations/{o}/items/{i}",
            )
        )
    if customer != organization_id and customer not in existing.organizations:
        problems.append(
            FieldViolation(row.where("customer"), f"organization {customer!r} not found")
        )
    if supplier != organization_id and supplier not in existing.organizations:
        problems.append(
            FieldViolation(row.where("facility"), f"organization {supplier!r} not found")
        )
    if organization_id not in (supplier, customer):
        problems.append(
            FieldViolation(
                row.where("facility"),
                "is not one of your facilities, and you are not the customer: you must be the "
                "supplier or the customer of an edge",
            )
        )
    if item_owner not in (supplier, customer):
        problems.append(
            FieldViolation(row.where("item"), "must be an item of the supplier or the customer")
        )
    problems.extend(
        edge_problems(
            f"rows[{row.line}].",
            row.number("lead_time_days"),
            row.number("unit_price"),
            row.number("share"),
            row.number("monthly_volume"),
        )
    )
    edge = SupplyEdge(
        eid,
        organization_id,
        fid,
        supplier,
        iid,
        item_owner,
        customer,
        row.number("lead_time_days"),
        row.number("unit_price"),
        row.number("share"),
        row.number("monthly_volume"),
    )
    if not edge.cross_organization:
        if current is not None and current.state != ACTIVE:
            problems.append(
                FieldViolation(row.where("id"), f"{eid!r} is already used by a proposal")
            )
            return
        if plan.count("edge", current is not None, current == edge):
            plan.edges.append((edge, current is None))
        return
    proposal = replace(edge, state=PROPOSED)
    if current is None:
        plan.count("edge", False, False)
        plan.proposals.append((proposal, True))
    elif current.state == ACTIVE:
        # Agreed terms change only by agreement: an unchanged row is fine, a changed one is not.
        if current == edge:
            plan.count("edge", True, True)
        else:
            problems.append(
                FieldViolation(
                    row.where("id"),
                    f"{eid!r} is an agreed edge with another organization; its terms change "
                    "only by a new proposal (delete it and propose again)",
                )
            )
    elif current.state == PROPOSED:
        if plan.count("edge", True, current == proposal):
            plan.proposals.append((proposal, False))
    else:
        problems.append(
            FieldViolation(
                row.where("id"),
                f"{eid!r} was a proposal now {current.state.lower()}; propose with a new id",
            )
        )


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, tuple):
        return ";".join(value)
    return str(value)


def export_records(
    facilities: Iterable[Facility],
    capabilities: Iterable[Capability],
    items: Iterable[Item],
    edges: Iterable[SupplyEdge],
) -> Iterator[dict[str, Any]]:
    """An organization's data as import rows, definitions before the rows referring to them."""
    for f in facilities:
        yield {
            "kind": "facility",
            "id": f.id,
            "display_name": f.display_name,
            "region": f.region,
            "country_code": f.country_code,
            "latitude": f.latitude,
            "longitude": f.longitude,
        }
    for c in capabilities:
        yield {
            "kind": "capability",
            "id": c.id,
            "facility": c.facility_id,
            "process": c.process,
            "materials": c.materials,
            "monthly_capacity": c.monthly_capacity,
            "certifications": c.certifications,
        }
    item_list = list(items)
    for i in item_list:
        yield {
            "kind": "item",
            "id": i.id,
            "display_name": i.display_name,
            "part_number": i.part_number,
            "end_item": i.end_item,
            "unit_revenue": i.unit_revenue,
            "weekly_demand": i.weekly_demand,
            "inventory_weeks": i.inventory_weeks,
            "design": i.design,
            "revision": i.revision,
            "process": i.process,
            "material": i.material,
        }
    for i in item_list:
        for component, quantity, _ in i.components:
            yield {"kind": "bom", "parent": i.id, "component": component, "quantity": quantity}
    for e in edges:
        yield {
            "kind": "edge",
            "id": e.id,
            "facility": e.facility_id if e.supplier_id == e.owner_id else e.facility_name,
            "item": e.item_id if e.item_organization_id == e.owner_id else e.item_name,
            "customer": e.customer_id,
            "lead_time_days": e.lead_time_days,
            "unit_price": e.unit_price,
            "share": e.share,
            "monthly_volume": e.monthly_volume,
        }


def render_rows(fmt: str, records: Iterable[Mapping[str, Any]]) -> Iterator[str]:
    """Export rows as lines of text (CSV with the header first, or JSON lines)."""
    if fmt == CSV:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(ALL_COLUMNS)
        for record in records:
            writer.writerow([_fmt(record.get(c, "")) for c in ALL_COLUMNS])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
        yield buffer.getvalue()
    else:
        for record in records:
            plain = {k: list(v) if isinstance(v, tuple) else v for k, v in record.items()}
            yield json.dumps(plain, separators=(",", ":"), sort_keys=False) + "\n"
