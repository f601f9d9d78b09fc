"""Procurement: RFQs pinned to released design revisions, sealed quotes, evaluation, awards."""

from services.supply.procurement.application import ProcurementApplication, RfqDraft
from services.supply.procurement.domain import (
    Allocation,
    Attachment,
    Quote,
    QuoteState,
    QuoteTerms,
    Rfq,
    RfqState,
    Score,
    Weights,
    score_quotes,
)
from services.supply.procurement.ports import (
    CapabilityQuery,
    DesignReferences,
    DesignRevisions,
    GrpcDesignRevisions,
    ItemLink,
    NetworkDirectory,
    SupplierDirectory,
)
from services.supply.procurement.wiring import procurement_registration

__all__ = [
    "Allocation",
    "Attachment",
    "CapabilityQuery",
    "DesignReferences",
    "DesignRevisions",
    "GrpcDesignRevisions",
    "ItemLink",
    "NetworkDirectory",
    "ProcurementApplication",
    "Quote",
    "QuoteState",
    "QuoteTerms",
    "Rfq",
    "RfqDraft",
    "RfqState",
    "Score",
    "SupplierDirectory",
    "Weights",
    "procurement_registration",
    "score_quotes",
]
