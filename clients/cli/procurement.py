"""`cofab rfq ...` and `cofab quote ...`: requests for quotation, quotes, evaluation, awards."""

from __future__ import annotations

import argparse
import datetime as dt

from google.protobuf.timestamp_pb2 import Timestamp

from clients.cli.common import (
    Subcommands,
    client,
    command,
    emit,
    emit_list,
    every_page,
    format_time,
    organization_name,
    parse_duration,
    request_id,
)
from cofab.identity.v1 import identity_pb2
from cofab.procurement.v1 import procurement_pb2 as pb
from services.shared.config import Settings

RFQ_STATES = {
    pb.Rfq.STATE_DRAFT: "draft",
    pb.Rfq.STATE_OPEN: "open",
    pb.Rfq.STATE_CLOSED: "closed",
    pb.Rfq.STATE_AWARDED: "awarded",
    pb.Rfq.STATE_CANCELLED: "cancelled",
}
QUOTE_STATES = {
    pb.Quote.STATE_SUBMITTED: "submitted",
    pb.Quote.STATE_WITHDRAWN: "withdrawn",
    pb.Quote.STATE_INVALIDATED: "invalidated",
}
WEIGHT_NAMES = ("price", "lead_time", "supplier_risk", "capacity_fit")


AWARD_POLICIES = {
    "buyer": pb.Rfq.AWARD_POLICY_BUYER,
    "automatic": pb.Rfq.AWARD_POLICY_AUTOMATIC,
    "approval": pb.Rfq.AWARD_POLICY_AUTOMATIC_AFTER_APPROVAL,
}


def when(text: str) -> dt.datetime:
    """A date (2027-03-01, midnight UTC), an ISO time, or a duration from now (30d, 12h)."""
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=parse_duration(text))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def weights(text: str) -> pb.EvaluationWeights:
    """'price=2,lead_time=1,supplier_risk=1,capacity_fit=0' (missing names count 0)."""
    values: dict[str, float] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in WEIGHT_NAMES:
            raise argparse.ArgumentTypeError(
                f"{part!r}: use name=number with names {', '.join(WEIGHT_NAMES)}"
            )
        try:
            values[key.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    return pb.EvaluationWeights(**values)


def allocation(text: str) -> pb.Allocation:
    """'globex=60' -> 60 units to organizations/globex."""
    supplier, sep, quantity = text.partition("=")
    if not sep or not quantity.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not SUPPLIER=QUANTITY, e.g. globex=60")
    return pb.Allocation(supplier=organization_name(supplier), quantity=int(quantity))


def attachment(text: str) -> pb.Attachment:
    """'offer.pdf:<sha256>:<size>:application/pdf', a blob already in the blob store."""
    parts = text.split(":")
    if len(parts) != 4 or not parts[2].isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not FILE:SHA256:SIZE:MEDIA_TYPE")
    return pb.Attachment(
        file_name=parts[0], sha256=parts[1], size_bytes=int(parts[2]), media_type=parts[3]
    )


def _ts(value: dt.datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(value)
    return out


def _print_rfq(r: pb.Rfq) -> None:
    revision = f"  revision {r.design_revision}" if r.design_revision else ""
    print(
        f"{r.name}  {RFQ_STATES.get(r.state, '?')}  {r.display_name!r}  {r.quantity} x {r.item}"
        f"{revision}  due {format_time(r.due_time)}  quotes until {format_time(r.quote_deadline)}"
    )
    if r.buyer and r.quote_count:
        print(f"  {r.quote_count} current quote(s)")
    print(f"  invited: {', '.join(r.invited_suppliers) or '-'}")
    for a in r.allocations:
        print(f"  awarded {a.quantity} to {a.supplier} ({a.quote})")
    for a in r.proposed_allocations:
        print(f"  proposed: {a.quantity} to {a.supplier} ({a.quote})")


def _print_quote(q: pb.Quote) -> None:
    print(
        f"{q.name}  {QUOTE_STATES.get(q.state, '?')}  {q.supplier}  {q.unit_price:g}/unit  "
        f"{q.lead_time_days} days  capacity {q.capacity}  valid until {format_time(q.valid_until)}"
        f"  revision {q.revision}"
    )
    for a in q.attachments:
        print(f"  attachment {a.file_name} ({a.media_type}, {a.size_bytes} bytes, {a.sha256})")


def cmd_rfq_create(args: argparse.Namespace, settings: Settings) -> None:
    search = None
    if args.process or args.material or args.region or args.certification:
        search = pb.SupplierSearch(
            process=args.process,
            material=args.material,
            region=args.region,
            min_capacity=args.min_capacity,
            certification=args.certification,
            limit=args.limit,
        )
    with client(settings) as cofab:
        me = cofab.identity.GetCallerIdentity(identity_pb2.GetCallerIdentityRequest())
        rfq = cofab.procurement.CreateRfq(
            pb.CreateRfqRequest(
                parent=me.organization,
                rfq=pb.Rfq(
                    display_name=args.display_name,
                    item=args.item,
                    quantity=args.quantity,
                    due_time=_ts(args.due),
                    quote_deadline=_ts(args.deadline),
                    design_revision=args.revision,
                    invited_suppliers=[organization_name(s) for s in args.supplier],
                    weights=args.weights,
                    currency_code=args.currency,
                    award_policy=AWARD_POLICIES[args.award_policy],
                ),
                supplier_search=search,
                request_id=request_id(),
            )
        )
    emit(args, rfq, lambda: _print_rfq(rfq))


def cmd_rfq_open(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        rfq = cofab.procurement.OpenRfq(pb.OpenRfqRequest(name=args.rfq, request_id=request_id()))
    emit(args, rfq, lambda: _print_rfq(rfq))


def cmd_rfq_close(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        rfq = cofab.procurement.CloseRfq(pb.CloseRfqRequest(name=args.rfq, request_id=request_id()))
    emit(args, rfq, lambda: _print_rfq(rfq))


def cmd_rfq_cancel(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        rfq = cofab.procurement.CancelRfq(
            pb.CancelRfqRequest(name=args.rfq, reason=args.reason, request_id=request_id())
        )
    emit(args, rfq, lambda: _print_rfq(rfq))


def cmd_rfq_list(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        if args.invited:
            parent = "organizations/-"
        else:
            me = cofab.identity.GetCallerIdentity(identity_pb2.GetCallerIdentityRequest())
            parent = me.organization
        pages = every_page(
            lambda token: cofab.procurement.ListRfqs(
                pb.ListRfqsRequest(parent=parent, page_size=100, page_token=token)
            ),
            "rfqs",
        )
        emit_list(args, "rfqs", pages, _print_rfq)


def cmd_rfq_show(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        rfq = cofab.procurement.GetRfq(pb.GetRfqRequest(name=args.rfq))
    emit(args, rfq, lambda: _print_rfq(rfq))


def cmd_rfq_evaluate(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        result = cofab.procurement.EvaluateRfq(
            pb.EvaluateRfqRequest(name=args.rfq, weights=args.weights)
        )

    def human() -> None:
        w = result.weights
        print(
            f"weights: price {w.price:.2f}, lead time {w.lead_time:.2f}, "
            f"supplier risk {w.supplier_risk:.2f}, capacity fit {w.capacity_fit:.2f}"
        )
        for s in result.scores:
            print(
                f"{s.rank:>3}. {s.supplier}  total {s.total:.3f}  (price {s.price:.3f}, "
                f"lead time {s.lead_time:.3f}, risk {s.supplier_risk:.3f}, "
                f"capacity {s.capacity_fit:.3f})  {s.quote}"
            )

    emit(args, result, human)


def cmd_rfq_award(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        rfq = cofab.procurement.AwardRfq(
            pb.AwardRfqRequest(name=args.rfq, allocations=args.allocation, request_id=request_id())
        )
    emit(args, rfq, lambda: _print_rfq(rfq))


def cmd_rfq_approve(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        rfq = cofab.procurement.ApproveAward(
            pb.ApproveAwardRequest(name=args.rfq, request_id=request_id())
        )
    emit(args, rfq, lambda: _print_rfq(rfq))


def cmd_rfq_revise(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        rfq = cofab.procurement.ReviseRfq(
            pb.ReviseRfqRequest(
                name=args.rfq,
                design_revision=args.revision,
                reason=args.reason,
                request_id=request_id(),
            )
        )
    emit(args, rfq, lambda: _print_rfq(rfq))


def cmd_quote_submit(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        quote = cofab.procurement.SubmitQuote(
            pb.SubmitQuoteRequest(
                parent=args.rfq,
                quote=pb.Quote(
                    unit_price=args.price,
                    lead_time_days=args.lead_days,
                    capacity=args.capacity,
                    valid_until=_ts(args.valid_until),
                    notes=args.notes,
                    attachments=args.attach,
                ),
                request_id=request_id(),
            )
        )
    emit(args, quote, lambda: _print_quote(quote))


def cmd_quote_list(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        pages = every_page(
            lambda token: cofab.procurement.ListQuotes(
                pb.ListQuotesRequest(parent=args.rfq, page_size=100, page_token=token)
            ),
            "quotes",
        )
        emit_list(args, "quotes", pages, _print_quote)


def cmd_quote_update(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        current = cofab.procurement.GetQuote(pb.GetQuoteRequest(name=args.quote))
        revised = pb.Quote(
            name=current.name,
            unit_price=current.unit_price if args.price is None else args.price,
            lead_time_days=current.lead_time_days if args.lead_days is None else args.lead_days,
            capacity=current.capacity if args.capacity is None else args.capacity,
            valid_until=current.valid_until if args.valid_until is None else _ts(args.valid_until),
            notes=current.notes if args.notes is None else args.notes,
            attachments=current.attachments,
        )
        # The etag of the quote read: a change made meanwhile is refused, not overwritten.
        quote = cofab.procurement.UpdateQuote(
            pb.UpdateQuoteRequest(quote=revised, etag=current.etag, request_id=request_id())
        )
    emit(args, quote, lambda: _print_quote(quote))


def cmd_quote_withdraw(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        quote = cofab.procurement.WithdrawQuote(
            pb.WithdrawQuoteRequest(name=args.quote, request_id=request_id())
        )
    emit(args, quote, lambda: _print_quote(quote))


def register(sub: Subcommands) -> None:
    """Adds `cofab rfq ...` and `cofab quote ...` to the parser."""
    rfq = sub.add_parser("rfq", help="requests for quotation (as buyer or invited supplier)")
    rfq_sub = rfq.add_subparsers(dest="rfq_command", required=True)
    p = command(rfq_sub, "create", cmd_rfq_create, "create a draft RFQ for an item", prints=True)
    p.add_argument("item", help="organizations/{organization}/items/{item}")
    p.add_argument("--quantity", type=int, required=True)
    p.add_argument("--due", type=when, required=True, help="delivery date or duration, e.g. 30d")
    p.add_argument("--deadline", type=when, required=True, help="quote deadline, e.g. 7d")
    p.add_argument("--display-name", default="")
    p.add_argument("--revision", default="", help="released design revision (designed parts)")
    p.add_argument(
        "--supplier", action="append", default=[], help="invite an organization (repeatable)"
    )
    p.add_argument("--weights", type=weights, default=None, help="e.g. price=2,lead_time=1")
    p.add_argument("--currency", default="EUR")
    p.add_argument(
        "--award-policy",
        choices=sorted(AWARD_POLICIES),
        default="buyer",
        help="buyer: you award (rfq award); automatic: the platform awards the best quotes at "
        "close; approval: it proposes them and you approve (rfq approve)",
    )
    search = p.add_argument_group("invite suppliers found by capability")
    search.add_argument("--process", default="")
    search.add_argument("--material", default="")
    search.add_argument("--region", default="")
    search.add_argument("--certification", default="")
    search.add_argument("--min-capacity", type=float, default=0.0)
    search.add_argument("--limit", type=int, default=0)
    for name, fn, text in (
        ("open", cmd_rfq_open, "open a draft RFQ: invited suppliers are told"),
        ("close", cmd_rfq_close, "close an open RFQ: its quotes are unsealed"),
        ("show", cmd_rfq_show, "show one RFQ"),
        ("approve", cmd_rfq_approve, "approve the award the platform proposed"),
    ):
        command(rfq_sub, name, fn, text, prints=True).add_argument("rfq")
    p = command(rfq_sub, "cancel", cmd_rfq_cancel, "cancel an RFQ that is not awarded", prints=True)
    p.add_argument("rfq")
    p.add_argument("--reason", default="")
    p = command(
        rfq_sub, "list", cmd_rfq_list, "list your RFQs, or those you are invited to", prints=True
    )
    p.add_argument("--invited", action="store_true", help="RFQs your organization may quote on")
    p = command(rfq_sub, "evaluate", cmd_rfq_evaluate, "rank the quotes of a closed RFQ", True)
    p.add_argument("rfq")
    p.add_argument("--weights", type=weights, default=None, help="override, e.g. price=1")
    p = command(
        rfq_sub, "award", cmd_rfq_award, "award a closed RFQ (split awards allowed)", prints=True
    )
    p.add_argument("rfq")
    p.add_argument("allocation", type=allocation, nargs="+", help="SUPPLIER=QUANTITY")

    p = command(
        rfq_sub,
        "revise",
        cmd_rfq_revise,
        "move an open RFQ to a newer released revision",
        prints=True,
    )
    p.add_argument("rfq")
    p.add_argument("revision", help="projects/{project}/designs/{design}/revisions/{revision}")
    p.add_argument("--reason", default="")

    quote = sub.add_parser("quote", help="your quotes on RFQs you are invited to")
    quote_sub = quote.add_subparsers(dest="quote_command", required=True)
    p = command(quote_sub, "submit", cmd_quote_submit, "quote on an open RFQ", prints=True)
    p.add_argument("rfq")
    p.add_argument("--price", type=float, required=True, help="per unit, in the RFQ's currency")
    p.add_argument("--lead-days", type=int, required=True)
    p.add_argument("--capacity", type=int, required=True)
    p.add_argument("--valid-until", type=when, default=when("30d"))
    p.add_argument("--notes", default="")
    p.add_argument(
        "--attach", type=attachment, action="append", default=[], help="FILE:SHA256:SIZE:TYPE"
    )
    p = command(quote_sub, "list", cmd_quote_list, "list quotes of an RFQ you may see", prints=True)
    p.add_argument("rfq")
    p = command(
        quote_sub, "update", cmd_quote_update, "revise your quote while the RFQ is open", True
    )
    p.add_argument("quote", help="organizations/{buyer}/rfqs/{rfq}/quotes/{quote}")
    p.add_argument("--price", type=float, help="per unit, in the RFQ's currency")
    p.add_argument("--lead-days", type=int)
    p.add_argument("--capacity", type=int)
    p.add_argument("--valid-until", type=when)
    p.add_argument("--notes")
    p = command(quote_sub, "withdraw", cmd_quote_withdraw, "withdraw your quote", prints=True)
    p.add_argument("quote")
