"""Procurement rules without I/O: lifecycle, validation, sealing, scoring and split awards."""

from __future__ import annotations

import datetime as dt

import pytest

from services.shared.errors import Conflict, FailedPrecondition, InvalidArgument
from services.supply.procurement import domain
from services.supply.procurement.domain import (
    Allocation,
    Attachment,
    Quote,
    QuoteState,
    QuoteTerms,
    Rfq,
    RfqState,
    Weights,
)

NOW = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def rfq(**overrides: object) -> Rfq:
    fields: dict[str, object] = dict(
        id="r1",
        buyer_id="acme",
        display_name="Brackets",
        item="organizations/acme/items/bracket",
        quantity=100,
        due_time=NOW + 20 * DAY,
        design_revision="",
        quote_deadline=NOW + 5 * DAY,
        weights=Weights(),
        currency_code="EUR",
        state=RfqState.DRAFT,
        version=1,
        create_time=NOW,
        update_time=NOW,
        suppliers=("globex", "initech"),
    )
    fields.update(overrides)
    return Rfq(**fields)  # type: ignore[arg-type]


def quote(
    quote_id: str,
    supplier: str,
    price: float,
    lead: int,
    capacity: int,
    state: QuoteState = QuoteState.SUBMITTED,
    valid_until: dt.datetime = NOW + 30 * DAY,
) -> Quote:
    return Quote(
        id=quote_id,
        rfq_id="r1",
        buyer_id="acme",
        supplier_id=supplier,
        terms=QuoteTerms(price, lead, capacity, valid_until),
        state=state,
        revision=1,
        create_time=NOW,
        update_time=NOW,
    )


# lifecycle ---------------------------------------------------------------------------------


def test_lifecycle_draft_open_closed_awarded_bumps_version_and_times() -> None:
    opened = domain.transition(rfq(), "open", NOW)
    assert (opened.state, opened.version, opened.open_time) == (RfqState.OPEN, 2, NOW)
    later = NOW + DAY
    closed = domain.transition(opened, "close", later)
    assert (closed.state, closed.version, closed.close_time) == (RfqState.CLOSED, 3, later)
    awarded = domain.transition(closed, "award", later)
    assert (awarded.state, awarded.etag) == (RfqState.AWARDED, "4")


@pytest.mark.parametrize(
    ("state", "action"),
    [
        (RfqState.OPEN, "open"),
        (RfqState.DRAFT, "close"),
        (RfqState.OPEN, "award"),
        (RfqState.AWARDED, "cancel"),
        (RfqState.CANCELLED, "cancel"),
        (RfqState.CANCELLED, "open"),
    ],
)
def test_transitions_outside_the_lifecycle_fail_naming_the_state(
    state: RfqState, action: str
) -> None:
    with pytest.raises(FailedPrecondition) as caught:
        domain.transition(rfq(state=state), action, NOW)
    assert f"it is {state.value.lower()}" in caught.value.message


@pytest.mark.parametrize("state", [RfqState.DRAFT, RfqState.OPEN, RfqState.CLOSED])
def test_cancel_from_draft_open_or_closed(state: RfqState) -> None:
    assert domain.transition(rfq(state=state), "cancel", NOW).state is RfqState.CANCELLED


def test_an_rfq_cannot_open_after_its_quote_deadline() -> None:
    with pytest.raises(FailedPrecondition, match="deadline"):
        domain.transition(rfq(quote_deadline=NOW - DAY), "open", NOW)


def test_etag_mismatch_is_a_conflict_naming_the_current_etag() -> None:
    domain.check_etag("", "3", "x")
    domain.check_etag("3", "3", "x")
    with pytest.raises(Conflict) as caught:
        domain.check_etag("2", "3", "x")
    assert caught.value.current == "3"


# validation --------------------------------------------------------------------------------


def test_new_rfq_reports_every_invalid_field() -> None:
    with pytest.raises(InvalidArgument) as caught:
        domain.check_new_rfq("x", 0, NOW - DAY, None, "euro", Weights(), NOW)
    fields = {v.field for v in caught.value.violations}
    assert fields == {"rfq.quantity", "rfq.due_time", "rfq.quote_deadline", "rfq.currency_code"}


def test_quote_deadline_must_come_before_the_due_time() -> None:
    with pytest.raises(InvalidArgument, match="before rfq.due_time"):
        domain.check_new_rfq("x", 5, NOW + DAY, NOW + 2 * DAY, "EUR", Weights(), NOW)


def test_negative_or_infinite_weights_are_rejected() -> None:
    with pytest.raises(InvalidArgument) as caught:
        domain.check_weights(Weights(price=-1, lead_time=float("inf")), "weights")
    assert {v.field for v in caught.value.violations} == {"weights.price", "weights.lead_time"}


def test_invited_suppliers_exclude_the_buyer_and_are_required() -> None:
    with pytest.raises(InvalidArgument, match="at least one"):
        domain.check_invited("acme", [])
    with pytest.raises(InvalidArgument, match="own RFQ"):
        domain.check_invited("acme", ["globex", "acme"])
    domain.check_invited("acme", ["globex"])


def test_quote_terms_report_each_bad_field_and_attachment() -> None:
    terms = QuoteTerms(
        unit_price=0.0,
        lead_time_days=-1,
        capacity=0,
        valid_until=NOW,
        attachments=(Attachment("a/b.pdf", "ABC", -1, "pdf"),),
    )
    with pytest.raises(InvalidArgument) as caught:
        domain.check_quote_terms(terms, NOW)
    assert {v.field for v in caught.value.violations} == {
        "quote.unit_price",
        "quote.lead_time_days",
        "quote.capacity",
        "quote.valid_until",
        "quote.attachments[0].file_name",
        "quote.attachments[0].sha256",
        "quote.attachments[0].size_bytes",
        "quote.attachments[0].media_type",
    }


# quoting and sealing -----------------------------------------------------------------------


def test_quotes_only_while_open_and_before_the_deadline() -> None:
    domain.require_quotable(rfq(state=RfqState.OPEN), NOW)
    with pytest.raises(FailedPrecondition, match="closed"):
        domain.require_quotable(rfq(state=RfqState.CLOSED), NOW)
    with pytest.raises(FailedPrecondition, match="deadline"):
        domain.require_quotable(rfq(state=RfqState.OPEN), NOW + 5 * DAY)


def test_quotes_are_sealed_from_the_buyer_until_close() -> None:
    for sealed in (
        rfq(state=RfqState.DRAFT),
        rfq(state=RfqState.OPEN),
        rfq(state=RfqState.CANCELLED, close_time=None),
    ):
        with pytest.raises(FailedPrecondition, match="sealed"):
            domain.require_unsealed(sealed)
    domain.require_unsealed(rfq(state=RfqState.CLOSED, close_time=NOW))
    domain.require_unsealed(rfq(state=RfqState.CANCELLED, close_time=NOW))
    domain.require_unsealed(rfq(state=RfqState.AWARDED, close_time=NOW))


# scoring -----------------------------------------------------------------------------------


def test_scores_worked_out_by_hand() -> None:
    # 100 units due in 20 days; weights price 2, lead time 1, risk 1, capacity 0
    # -> normalized 0.5 / 0.25 / 0.25 / 0. The cheapest price is 8.
    #   A: price 8/10 = 0.8, lead min(1, 20/10) = 1, risk 1-0.2 = 0.8, capacity 1
    #      total 0.5*0.8 + 0.25*1 + 0.25*0.8 = 0.85
    #   B: price 1, lead 20/40 = 0.5, risk 0.5, capacity 60/100 = 0.6
    #      total 0.5 + 0.125 + 0.125 = 0.75
    #   C: price 8/12.5 = 0.64, lead 1 (no lead time), risk 1 (none known), capacity 1
    #      total 0.32 + 0.25 + 0.25 = 0.82
    # The withdrawn quote D (cheapest of all) does not count, not even for the cheapest price.
    quotes = [
        quote("a", "sa", 10.0, 10, 100),
        quote("b", "sb", 8.0, 40, 60),
        quote("c", "sc", 12.5, 0, 200),
        quote("d", "sd", 1.0, 1, 100, state=QuoteState.WITHDRAWN),
    ]
    scores = domain.score_quotes(
        quotes, 100, NOW + 20 * DAY, NOW, Weights(2, 1, 1, 0), {"sa": 0.2, "sb": 0.5}
    )
    assert [(s.quote_id, s.rank) for s in scores] == [("a", 1), ("c", 2), ("b", 3)]
    by_id = {s.quote_id: s for s in scores}
    assert by_id["a"].price == pytest.approx(0.8)
    assert by_id["a"].supplier_risk == pytest.approx(0.8)
    assert by_id["a"].total == pytest.approx(0.85)
    assert by_id["b"].lead_time == pytest.approx(0.5)
    assert by_id["b"].capacity_fit == pytest.approx(0.6)
    assert by_id["b"].total == pytest.approx(0.75)
    assert by_id["c"].price == pytest.approx(0.64)
    assert by_id["c"].total == pytest.approx(0.82)


def test_all_zero_weights_count_every_criterion_equally() -> None:
    # Only quote: price 1, lead 20/40 = 0.5, risk 1 - 0.4 = 0.6, capacity 50/100 = 0.5
    # -> (1 + 0.5 + 0.6 + 0.5) / 4 = 0.65
    (score,) = domain.score_quotes(
        [quote("a", "sa", 3.0, 40, 50)], 100, NOW + 20 * DAY, NOW, Weights(), {"sa": 0.4}
    )
    assert score.total == pytest.approx(0.65)
    assert Weights().normalized() == Weights(0.25, 0.25, 0.25, 0.25)


def test_past_due_time_scores_lead_time_zero_and_risk_is_clamped() -> None:
    (score,) = domain.score_quotes(
        [quote("a", "sa", 3.0, 5, 100)], 100, NOW - DAY, NOW, Weights(0, 1, 1, 0), {"sa": 7.0}
    )
    assert (score.lead_time, score.supplier_risk, score.total) == (0.0, 0.0, 0.0)


def test_ties_rank_the_cheaper_quote_first() -> None:
    quotes = [quote("x", "sx", 5.0, 1, 100), quote("y", "sy", 4.0, 1, 100)]
    scores = domain.score_quotes(quotes, 100, NOW + DAY, NOW, Weights(capacity_fit=1), {})
    assert [s.quote_id for s in scores] == ["y", "x"]
    assert scores[0].total == scores[1].total == 1.0


def test_no_current_quotes_no_scores() -> None:
    withdrawn = quote("a", "sa", 1.0, 1, 1, state=QuoteState.WITHDRAWN)
    assert domain.score_quotes([withdrawn], 1, NOW + DAY, NOW, Weights(), {}) == []


# awards ------------------------------------------------------------------------------------


def closed_rfq() -> Rfq:
    return rfq(state=RfqState.CLOSED, close_time=NOW)


def test_split_award_within_capacities_summing_to_the_quantity() -> None:
    quotes = [quote("qa", "globex", 10.0, 5, 60), quote("qb", "initech", 11.0, 5, 100)]
    result = domain.check_allocations(
        closed_rfq(), [Allocation("globex", 60), Allocation("initech", 40)], quotes, NOW
    )
    assert result == [Allocation("globex", 60, "qa"), Allocation("initech", 40, "qb")]


@pytest.mark.parametrize(
    ("allocations", "field", "text"),
    [
        ([Allocation("globex", 50)], "allocations", "sum to 50"),
        ([Allocation("globex", 61), Allocation("initech", 39)], "allocations[0].quantity", "61"),
        ([Allocation("globex", 0), Allocation("initech", 100)], "allocations[0].quantity", ""),
        ([Allocation("globex", 50), Allocation("globex", 50)], "allocations[1].supplier", "twice"),
        ([Allocation("hooli", 100)], "allocations[0].supplier", "no current quote"),
        ([], "allocations", "at least one"),
    ],
)
def test_invalid_awards_name_the_allocation(
    allocations: list[Allocation], field: str, text: str
) -> None:
    quotes = [
        quote("qa", "globex", 10.0, 5, 60),
        quote("qb", "initech", 11.0, 5, 100),
        quote("qc", "hooli", 9.0, 5, 100, state=QuoteState.WITHDRAWN),
    ]
    with pytest.raises(InvalidArgument) as caught:
        domain.check_allocations(closed_rfq(), allocations, quotes, NOW)
    assert field in {v.field for v in caught.value.violations}
    assert text in caught.value.message


def test_an_expired_quote_cannot_be_awarded() -> None:
    quotes = [quote("qa", "globex", 10.0, 5, 100, valid_until=NOW - DAY)]
    with pytest.raises(FailedPrecondition, match="no longer valid"):
        domain.check_allocations(closed_rfq(), [Allocation("globex", 100)], quotes, NOW)


# a newer design revision --------------------------------------------------------------------

REV = "projects/p/designs/d/revisions/"


def test_an_open_rfq_moves_to_a_newer_revision_of_its_design() -> None:
    pinned = rfq(state=RfqState.OPEN, design_revision=REV + "r1")
    moved = domain.revised(pinned, REV + "r2", NOW + DAY)
    assert (moved.design_revision, moved.version, moved.update_time) == (
        REV + "r2",
        2,
        NOW + DAY,
    )


def test_revising_needs_an_open_rfq_with_a_revision_and_a_new_one_of_that_design() -> None:
    with pytest.raises(FailedPrecondition, match="only an open RFQ"):
        domain.revised(rfq(design_revision=REV + "r1"), REV + "r2", NOW)
    with pytest.raises(FailedPrecondition, match="without a design revision"):
        domain.revised(rfq(state=RfqState.OPEN), REV + "r2", NOW)
    pinned = rfq(state=RfqState.OPEN, design_revision=REV + "r1")
    with pytest.raises(InvalidArgument, match="must be a revision of projects/p/designs/d"):
        domain.revised(pinned, "projects/p/designs/other/revisions/r2", NOW)
    with pytest.raises(InvalidArgument, match="pinned to"):
        domain.revised(pinned, REV + "r1", NOW)


def test_an_invalidated_quote_no_longer_counts() -> None:
    stale = quote("a", "sa", 1.0, 1, 100, state=QuoteState.INVALIDATED)
    assert not stale.current
    assert domain.score_quotes([stale], 100, NOW + DAY, NOW, Weights(), {}) == []
