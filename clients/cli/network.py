"""`cofab network|item|edge|supplier|risk|disruption`: the supply network from the command
line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

from clients.cli.common import (
    CliError,
    Subcommands,
    client,
    command,
    emit,
    emit_list,
    every_page,
    format_time,
    request_id,
)
from cofab.identity.v1 import identity_pb2
from cofab.supply.v1 import supply_pb2
from services.shared.config import Settings

FORMATS = {"csv": supply_pb2.NETWORK_FORMAT_CSV, "jsonl": supply_pb2.NETWORK_FORMAT_JSON_LINES}
KINDS = {
    "outage": supply_pb2.Disruption.KIND_OUTAGE,
    "capacity-drop": supply_pb2.Disruption.KIND_CAPACITY_DROP,
}
CHUNK_BYTES = 1024 * 1024
EDGE_STATES = {
    "proposed": supply_pb2.SupplyEdge.STATE_PROPOSED,
    "active": supply_pb2.SupplyEdge.STATE_ACTIVE,
    "declined": supply_pb2.SupplyEdge.STATE_DECLINED,
    "withdrawn": supply_pb2.SupplyEdge.STATE_WITHDRAWN,
}
_STATE_WORDS = {value: word for word, value in EDGE_STATES.items()}


def _format_of(path: str, given: str | None) -> supply_pb2.NetworkFormat.ValueType:
    if given:
        return FORMATS[given]
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix in ("jsonl", "ndjson", "json"):
        return FORMATS["jsonl"]
    if suffix == "csv":
        return FORMATS["csv"]
    raise CliError(f"cannot tell the format of {path}: pass --format csv or --format jsonl")


def _me(settings: Settings) -> str:
    with client(settings) as cofab:
        return str(
            cofab.identity.GetCallerIdentity(identity_pb2.GetCallerIdentityRequest()).organization
        )


def cmd_import(args: argparse.Namespace, settings: Settings) -> None:
    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"{path} is not a file")
    fmt = _format_of(args.file, args.format)
    content = path.read_bytes()

    def requests() -> Iterator[supply_pb2.ImportNetworkRequest]:
        yield supply_pb2.ImportNetworkRequest(
            header=supply_pb2.ImportNetworkRequest.Header(
                parent=parent, format=fmt, request_id=request_id()
            )
        )
        for start in range(0, len(content), CHUNK_BYTES):
            yield supply_pb2.ImportNetworkRequest(chunk=content[start : start + CHUNK_BYTES])

    parent = _me(settings)
    with client(settings) as cofab:
        response = cofab.supply.ImportNetwork(requests())
    print(f"{response.rows} rows")
    for c in response.counts:
        print(f"  {c.kind:<10} created {c.created}, updated {c.updated}, unchanged {c.unchanged}")


def cmd_export(args: argparse.Namespace, settings: Settings) -> None:
    parent = _me(settings)
    with client(settings) as cofab:
        chunks = cofab.supply.ExportNetwork(
            supply_pb2.ExportNetworkRequest(parent=parent, format=FORMATS[args.format])
        )
        if args.output:
            with open(args.output, "wb") as out:
                for chunk in chunks:
                    out.write(chunk.chunk)
        else:
            for chunk in chunks:
                sys.stdout.buffer.write(chunk.chunk)


def _print_item(i: supply_pb2.Item) -> None:
    end = " end-item" if i.end_item else ""
    print(f"{i.name}  {i.display_name!r} {i.part_number}{end}")
    for line in i.components:
        print(f"    {line.quantity:g} x {line.component}")


def _component(text: str) -> tuple[str, float]:
    name, _, quantity = text.rpartition("=")
    try:
        return name, float(quantity)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not COMPONENT=QUANTITY") from None


def cmd_item_create(args: argparse.Namespace, settings: Settings) -> None:
    parent = _me(settings)
    with client(settings) as cofab:
        item = cofab.supply.CreateItem(
            supply_pb2.CreateItemRequest(
                parent=parent,
                item_id=args.id,
                item=supply_pb2.Item(
                    display_name=args.display_name,
                    part_number=args.part_number,
                    end_item=args.end_item,
                    unit_revenue=args.unit_revenue,
                    weekly_demand=args.weekly_demand,
                    inventory_weeks=args.inventory_weeks,
                    components=[
                        supply_pb2.BomLine(component=c, quantity=q) for c, q in args.component
                    ],
                ),
                request_id=request_id(),
            )
        )
    emit(args, item, lambda: _print_item(item))


def cmd_item_list(args: argparse.Namespace, settings: Settings) -> None:
    parent = _me(settings)
    with client(settings) as cofab:
        pages = every_page(
            lambda token: cofab.supply.ListItems(
                supply_pb2.ListItemsRequest(parent=parent, page_size=1000, page_token=token)
            ),
            "items",
        )
        emit_list(args, "items", pages, _print_item)


def cmd_item_show(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        item = cofab.supply.GetItem(supply_pb2.GetItemRequest(name=args.item))
    emit(args, item, lambda: _print_item(item))


def _print_edge(e: supply_pb2.SupplyEdge) -> None:
    print(
        f"{e.name}  {_STATE_WORDS.get(e.state, '?')}  {e.facility} -> {e.customer}  {e.item}  "
        f"{e.monthly_volume:g}/month at {e.unit_price:g}, {e.lead_time_days:g} days"
    )


def cmd_edge_propose(args: argparse.Namespace, settings: Settings) -> None:
    parent = _me(settings)
    with client(settings) as cofab:
        edge = cofab.supply.CreateSupplyEdge(
            supply_pb2.CreateSupplyEdgeRequest(
                parent=parent,
                supply_edge_id=args.id or "",
                supply_edge=supply_pb2.SupplyEdge(
                    facility=args.facility,
                    item=args.item,
                    customer=args.customer,
                    lead_time_days=args.lead_time_days,
                    unit_price=args.unit_price,
                    share=args.share,
                    monthly_volume=args.monthly_volume,
                ),
                request_id=request_id(),
            )
        )
    emit(args, edge, lambda: _print_edge(edge))


def cmd_edge_list(args: argparse.Namespace, settings: Settings) -> None:
    parent = _me(settings)
    with client(settings) as cofab:
        pages = every_page(
            lambda token: cofab.supply.ListSupplyEdges(
                supply_pb2.ListSupplyEdgesRequest(
                    parent=parent,
                    page_size=1000,
                    page_token=token,
                    state=EDGE_STATES[args.state],
                )
            ),
            "supply_edges",
        )
        emit_list(args, "supplyEdges", pages, _print_edge)


def cmd_edge_answer(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        if args.edge_command == "confirm":
            edge = cofab.supply.ConfirmSupplyEdge(
                supply_pb2.ConfirmSupplyEdgeRequest(name=args.name, request_id=request_id())
            )
        elif args.edge_command == "decline":
            edge = cofab.supply.DeclineSupplyEdge(
                supply_pb2.DeclineSupplyEdgeRequest(name=args.name, request_id=request_id())
            )
        else:
            edge = cofab.supply.WithdrawSupplyEdge(
                supply_pb2.WithdrawSupplyEdgeRequest(name=args.name, request_id=request_id())
            )
    emit(args, edge, lambda: _print_edge(edge))


def cmd_supplier_search(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        found = cofab.supply.SearchCapableSuppliers(
            supply_pb2.SearchCapableSuppliersRequest(
                process=args.process,
                material=args.material,
                region=args.region,
                min_monthly_capacity=args.min_capacity,
                certification=args.certification,
                page_size=args.limit,
            )
        )

    def human() -> None:
        for s in found.suppliers:
            c = s.capability
            print(
                f"{s.organization}  {s.facility}  {s.region} {s.country_code}  {c.process} "
                f"{','.join(c.materials)}  {c.monthly_capacity:g}/month  "
                f"{','.join(c.certifications)}"
            )

    emit(args, found, human)


def cmd_risk(args: argparse.Namespace, settings: Settings) -> None:
    parent = _me(settings)
    with client(settings) as cofab:
        risk = cofab.supply.AnalyzeRisk(supply_pb2.AnalyzeRiskRequest(parent=parent))

    def human() -> None:
        print("single-source items:")
        for s in risk.single_source_items:
            print(f"  {s.item}  from {s.facility or '(a supplier beyond your direct partners)'}")
        print("critical facilities:")
        for c in risk.critical_facilities:
            print(f"  {c.facility} ({c.region})  cuts off {', '.join(c.end_items)}")
        for h in risk.hidden_critical_facilities:
            print(f"  {h.count} deeper in your chain in {h.region}")

    emit(args, risk, human)


def _print_disruption(d: supply_pb2.Disruption) -> None:
    kind = supply_pb2.Disruption.Kind.Name(d.kind).removeprefix("KIND_").lower()
    state = supply_pb2.Disruption.State.Name(d.state).removeprefix("STATE_").lower()
    print(
        f"{d.name}  {d.facility}  {kind} {d.expected_duration_days:g} days  {state}  "
        f"since {format_time(d.create_time)}"
    )
    if d.affected_customers or d.other_affected_customers:
        print(
            f"    affects {', '.join(d.affected_customers) or '-'}"
            f" and {d.other_affected_customers} more customers downstream"
        )


def cmd_disruption_report(args: argparse.Namespace, settings: Settings) -> None:
    parent = _me(settings)
    facility = args.facility if "/" in args.facility else f"{parent}/facilities/{args.facility}"
    with client(settings) as cofab:
        disruption = cofab.supply.ReportDisruption(
            supply_pb2.ReportDisruptionRequest(
                parent=parent,
                disruption=supply_pb2.Disruption(
                    facility=facility,
                    kind=KINDS[args.kind],
                    capacity_factor=args.capacity_factor,
                    expected_duration_days=args.days,
                    description=args.description,
                ),
                request_id=request_id(),
            )
        )
    emit(args, disruption, lambda: _print_disruption(disruption))


def cmd_disruption_list(args: argparse.Namespace, settings: Settings) -> None:
    parent = _me(settings)
    with client(settings) as cofab:
        pages = every_page(
            lambda token: cofab.supply.ListDisruptions(
                supply_pb2.ListDisruptionsRequest(parent=parent, page_size=1000, page_token=token)
            ),
            "disruptions",
        )
        emit_list(args, "disruptions", pages, _print_disruption)


def cmd_disruption_resolve(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        resolved = cofab.supply.ResolveDisruption(
            supply_pb2.ResolveDisruptionRequest(name=args.name, request_id=request_id())
        )
    emit(args, resolved, lambda: _print_disruption(resolved))


def register(sub: Subcommands) -> None:
    """Adds the supply-network commands to the `cofab` parser."""
    network = sub.add_parser("network", help="bulk import and export of your network data")
    network_sub = network.add_subparsers(dest="network_command", required=True)
    p = command(network_sub, "import", cmd_import, "import facilities, items, BOMs, edges")
    p.add_argument("file", help="a .csv or .jsonl file (see `cofab network export`)")
    p.add_argument("--format", choices=sorted(FORMATS))
    p = command(network_sub, "export", cmd_export, "export your network data")
    p.add_argument("--format", choices=sorted(FORMATS), default="csv")
    p.add_argument("--output", "-o", help="file to write (default: standard output)")

    item = sub.add_parser("item", help="your items (parts, products) and their BOMs")
    item_sub = item.add_subparsers(dest="item_command", required=True)
    p = command(item_sub, "create", cmd_item_create, "define an item", True)
    p.add_argument("id", help="item id: lower-case letters, digits, '-'")
    p.add_argument("display_name")
    p.add_argument("--part-number", default="")
    p.add_argument("--end-item", action="store_true", help="a product sold to the market")
    p.add_argument("--unit-revenue", type=float, default=0.0)
    p.add_argument("--weekly-demand", type=float, default=0.0)
    p.add_argument("--inventory-weeks", type=float, default=0.0)
    p.add_argument(
        "--component",
        type=_component,
        action="append",
        default=[],
        help="organizations/{o}/items/{i}=QUANTITY (repeatable)",
    )
    command(item_sub, "list", cmd_item_list, "list your items", True)
    p = command(item_sub, "show", cmd_item_show, "show an item", True)
    p.add_argument("item", help="organizations/{o}/items/{i}")

    edge = sub.add_parser(
        "edge", help="supply edges: an edge with another company needs its consent"
    )
    edge_sub = edge.add_subparsers(dest="edge_command", required=True)
    p = command(
        edge_sub, "propose", cmd_edge_propose, "propose (or, in-house, create) an edge", True
    )
    p.add_argument("facility", help="organizations/{o}/facilities/{f}, the supplier's facility")
    p.add_argument("item", help="organizations/{o}/items/{i}, the supplier's or customer's")
    p.add_argument("customer", help="organizations/{o}, the buyer")
    p.add_argument("--id", help="edge id (default: generated)")
    p.add_argument("--lead-time-days", type=float, default=0.0)
    p.add_argument("--unit-price", type=float, default=0.0)
    p.add_argument("--share", type=float, default=0.0, help="of the customer's volume, 0..1")
    p.add_argument("--monthly-volume", type=float, default=0.0)
    p = command(edge_sub, "list", cmd_edge_list, "list your edges, or proposals by state", True)
    p.add_argument("--state", choices=sorted(EDGE_STATES), default="active")
    for verb, what in (
        ("confirm", "agree to an edge proposed to you"),
        ("decline", "refuse an edge proposed to you"),
        ("withdraw", "take back your proposal"),
    ):
        p = command(edge_sub, verb, cmd_edge_answer, what, True)
        p.add_argument("name", help="organizations/{o}/supplyEdges/{e}")

    supplier = sub.add_parser("supplier", help="find capable suppliers")
    supplier_sub = supplier.add_subparsers(dest="supplier_command", required=True)
    p = command(supplier_sub, "search", cmd_supplier_search, "search published capabilities", True)
    p.add_argument("--process", required=True)
    p.add_argument("--material", default="")
    p.add_argument("--region", default="")
    p.add_argument("--min-capacity", type=float, default=0.0, help="units per month")
    p.add_argument("--certification", default="")
    p.add_argument("--limit", type=int, default=50)

    command(
        sub, "risk", cmd_risk, "single-source items and critical facilities of your network", True
    )

    disruption = sub.add_parser("disruption", help="report and follow facility disruptions")
    disruption_sub = disruption.add_subparsers(dest="disruption_command", required=True)
    p = command(disruption_sub, "report", cmd_disruption_report, "report a disruption", True)
    p.add_argument("facility", help="facility id or organizations/{o}/facilities/{f}")
    p.add_argument("--kind", choices=sorted(KINDS), default="outage")
    p.add_argument("--days", type=float, required=True, help="expected duration in days")
    p.add_argument(
        "--capacity-factor", type=float, default=0.0, help="remaining capacity for a drop"
    )
    p.add_argument("--description", default="")
    command(disruption_sub, "list", cmd_disruption_list, "list your disruptions", True)
    p = command(disruption_sub, "resolve", cmd_disruption_resolve, "mark a disruption over", True)
    p.add_argument("name", help="organizations/{o}/disruptions/{d}")
