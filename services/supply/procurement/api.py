"""gRPC servicer of procurement: proto -> use case -> proto, nothing more."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from cofab.procurement.v1 import procurement_pb2 as pb
from cofab.procurement.v1 import procurement_pb2_grpc
from services.shared import names
from services.shared.errors import InvalidArgument
from services.shared.identity import Principal
from services.shared.paging import page
from services.shared.server import current_principal
from services.supply.procurement.application import ProcurementApplication, RfqDraft
from services.supply.procurement.convert import (
    award_policy_from,
    from_timestamp,
    quote_proto,
    quote_terms,
    rfq_proto,
    score_proto,
    weights_from,
    weights_proto,
)
from services.supply.procurement.domain import Allocation
from services.supply.procurement.ports import CapabilityQuery

Context = Any  # grpc.aio.ServicerContext
RFQ = "organizations/{organization}/rfqs/{rfq}"
QUOTE = "organizations/{organization}/rfqs/{rfq}/quotes/{quote}"


def caller_authorization(context: Context) -> str:
    """The caller's authorization header, to ask another service with the caller's rights."""
    # The interceptor has already authenticated this header; it is forwarded as is to the
    # design service, which applies its own access rules to the caller.
    value = dict(context.invocation_metadata() or ()).get("authorization", "")
    return value if isinstance(value, str) else ""


def _viewer(principal: Principal) -> str | None:
    """Whose view of an RFQ to show: platform service accounts (workflows) see all of it."""
    return None if principal.service_account else principal.organization_id


class ProcurementServicer(procurement_pb2_grpc.ProcurementServiceServicer):
    def __init__(self, app: ProcurementApplication) -> None:
        self._app = app

    async def CreateRfq(self, request: pb.CreateRfqRequest, context: Context) -> pb.Rfq:
        buyer_id = names.parse_one(request.parent, "organizations/{organization}", "parent")
        r = request.rfq
        draft = RfqDraft(
            display_name=r.display_name,
            item=r.item,
            quantity=r.quantity,
            due_time=from_timestamp(r.due_time, r.HasField("due_time")),
            design_revision=r.design_revision,
            invited_suppliers=list(r.invited_suppliers),
            quote_deadline=from_timestamp(r.quote_deadline, r.HasField("quote_deadline")),
            weights=weights_from(r.weights),
            currency_code=r.currency_code or "EUR",
            award_policy=award_policy_from(r.award_policy),
        )
        search = None
        if request.HasField("supplier_search"):
            s = request.supplier_search
            search = CapabilityQuery(
                s.process, s.material, s.region, s.min_capacity, s.certification, s.limit
            )
        principal = current_principal()
        rfq = await asyncio.to_thread(
            self._app.create_rfq,
            principal,
            caller_authorization(context),
            buyer_id,
            draft,
            search,
            request.request_id,
        )
        return rfq_proto(rfq, _viewer(principal))

    async def GetRfq(self, request: pb.GetRfqRequest, context: Context) -> pb.Rfq:
        buyer_id, rfq_id = names.parse(request.name, RFQ, "name")
        principal = current_principal()
        rfq = await asyncio.to_thread(self._app.get_rfq, principal, buyer_id, rfq_id)
        return rfq_proto(rfq, _viewer(principal))

    async def ListRfqs(self, request: pb.ListRfqsRequest, context: Context) -> pb.ListRfqsResponse:
        if request.parent == "organizations/-":
            parent_id = "-"
        else:
            parent_id = names.parse_one(request.parent, "organizations/{organization}", "parent")
        principal = current_principal()
        listed = await asyncio.to_thread(
            self._app.list_rfqs,
            principal,
            parent_id,
            page(request.page_size, request.page_token, f"rfqs:{parent_id}"),
        )
        return pb.ListRfqsResponse(
            rfqs=[rfq_proto(r, _viewer(principal)) for r in listed.items],
            next_page_token=listed.next_page_token,
        )

    async def OpenRfq(self, request: pb.OpenRfqRequest, context: Context) -> pb.Rfq:
        buyer_id, rfq_id = names.parse(request.name, RFQ, "name")
        principal = current_principal()
        rfq = await asyncio.to_thread(
            self._app.open_rfq, principal, buyer_id, rfq_id, request.etag, request.request_id
        )
        return rfq_proto(rfq, _viewer(principal))

    async def CloseRfq(self, request: pb.CloseRfqRequest, context: Context) -> pb.Rfq:
        buyer_id, rfq_id = names.parse(request.name, RFQ, "name")
        principal = current_principal()
        rfq = await asyncio.to_thread(
            self._app.close_rfq, principal, buyer_id, rfq_id, request.etag, request.request_id
        )
        return rfq_proto(rfq, _viewer(principal))

    async def CancelRfq(self, request: pb.CancelRfqRequest, context: Context) -> pb.Rfq:
        buyer_id, rfq_id = names.parse(request.name, RFQ, "name")
        principal = current_principal()
        rfq = await asyncio.to_thread(
            self._app.cancel_rfq,
            principal,
            buyer_id,
            rfq_id,
            request.etag,
            request.reason,
            request.request_id,
        )
        return rfq_proto(rfq, _viewer(principal))

    async def EvaluateRfq(
        self, request: pb.EvaluateRfqRequest, context: Context
    ) -> pb.EvaluateRfqResponse:
        buyer_id, rfq_id = names.parse(request.name, RFQ, "name")
        weights = weights_from(request.weights) if request.HasField("weights") else None
        scores, used = await asyncio.to_thread(
            self._app.evaluate_rfq, current_principal(), buyer_id, rfq_id, weights
        )
        rfq_name = f"organizations/{buyer_id}/rfqs/{rfq_id}"
        return pb.EvaluateRfqResponse(
            scores=[score_proto(rfq_name, s) for s in scores], weights=weights_proto(used)
        )

    async def AwardRfq(self, request: pb.AwardRfqRequest, context: Context) -> pb.Rfq:
        buyer_id, rfq_id = names.parse(request.name, RFQ, "name")
        allocations = _allocations(request.allocations)
        principal = current_principal()
        rfq = await asyncio.to_thread(
            self._app.award_rfq,
            principal,
            buyer_id,
            rfq_id,
            allocations,
            request.etag,
            request.request_id,
        )
        return rfq_proto(rfq, _viewer(principal))

    async def ReviseRfq(self, request: pb.ReviseRfqRequest, context: Context) -> pb.Rfq:
        buyer_id, rfq_id = names.parse(request.name, RFQ, "name")
        principal = current_principal()
        rfq = await asyncio.to_thread(
            self._app.revise_rfq,
            principal,
            caller_authorization(context),
            buyer_id,
            rfq_id,
            request.design_revision,
            request.reason,
            request.etag,
            request.request_id,
        )
        return rfq_proto(rfq, _viewer(principal))

    async def SubmitQuote(self, request: pb.SubmitQuoteRequest, context: Context) -> pb.Quote:
        buyer_id, rfq_id = names.parse(request.parent, RFQ, "parent")
        quote = await asyncio.to_thread(
            self._app.submit_quote,
            current_principal(),
            buyer_id,
            rfq_id,
            quote_terms(request.quote),
            request.request_id,
        )
        return quote_proto(quote)

    async def RecordInboundQuote(
        self, request: pb.RecordInboundQuoteRequest, context: Context
    ) -> pb.Quote:
        buyer_id, rfq_id = names.parse(request.parent, RFQ, "parent")
        supplier_id = names.parse_one(request.supplier, "organizations/{organization}", "supplier")
        quote = await asyncio.to_thread(
            self._app.record_inbound_quote,
            current_principal(),
            buyer_id,
            rfq_id,
            supplier_id,
            quote_terms(request.quote),
            request.request_id,
        )
        return quote_proto(quote)

    async def ProposeAward(self, request: pb.ProposeAwardRequest, context: Context) -> pb.Rfq:
        buyer_id, rfq_id = names.parse(request.name, RFQ, "name")
        principal = current_principal()
        rfq = await asyncio.to_thread(
            self._app.propose_award,
            principal,
            buyer_id,
            rfq_id,
            _allocations(request.allocations),
            request.request_id,
        )
        return rfq_proto(rfq, _viewer(principal))

    async def ApproveAward(self, request: pb.ApproveAwardRequest, context: Context) -> pb.Rfq:
        buyer_id, rfq_id = names.parse(request.name, RFQ, "name")
        principal = current_principal()
        rfq = await asyncio.to_thread(
            self._app.approve_award,
            principal,
            buyer_id,
            rfq_id,
            request.etag,
            request.request_id,
        )
        return rfq_proto(rfq, _viewer(principal))

    async def UpdateQuote(self, request: pb.UpdateQuoteRequest, context: Context) -> pb.Quote:
        if not request.quote.name:
            raise InvalidArgument.field("quote.name", "names the quote to revise")
        buyer_id, rfq_id, quote_id = names.parse(request.quote.name, QUOTE, "quote.name")
        quote = await asyncio.to_thread(
            self._app.update_quote,
            current_principal(),
            buyer_id,
            rfq_id,
            quote_id,
            quote_terms(request.quote),
            request.etag,
            request.request_id,
        )
        return quote_proto(quote)

    async def WithdrawQuote(self, request: pb.WithdrawQuoteRequest, context: Context) -> pb.Quote:
        buyer_id, rfq_id, quote_id = names.parse(request.name, QUOTE, "name")
        quote = await asyncio.to_thread(
            self._app.withdraw_quote,
            current_principal(),
            buyer_id,
            rfq_id,
            quote_id,
            request.etag,
            request.request_id,
        )
        return quote_proto(quote)

    async def GetQuote(self, request: pb.GetQuoteRequest, context: Context) -> pb.Quote:
        buyer_id, rfq_id, quote_id = names.parse(request.name, QUOTE, "name")
        quote = await asyncio.to_thread(
            self._app.get_quote, current_principal(), buyer_id, rfq_id, quote_id
        )
        return quote_proto(quote)

    async def ListQuotes(
        self, request: pb.ListQuotesRequest, context: Context
    ) -> pb.ListQuotesResponse:
        buyer_id, rfq_id = names.parse(request.parent, RFQ, "parent")
        principal = current_principal()
        listed = await asyncio.to_thread(
            self._app.list_quotes,
            principal,
            buyer_id,
            rfq_id,
            page(
                request.page_size,
                request.page_token,
                f"quotes:{buyer_id}/{rfq_id}:{principal.organization_id}",
            ),
        )
        return pb.ListQuotesResponse(
            quotes=[quote_proto(q) for q in listed.items], next_page_token=listed.next_page_token
        )


def _allocations(allocations: Iterable[pb.Allocation]) -> list[Allocation]:
    return [
        Allocation(
            names.parse_one(
                a.supplier, "organizations/{organization}", f"allocations[{i}].supplier"
            ),
            a.quantity,
        )
        for i, a in enumerate(allocations)
    ]
