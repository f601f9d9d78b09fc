"""The automatic award of the procurement workflow: best ranks first, split by capacity."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.supply.procurement.domain import Allocation, automatic_allocations


def test_the_best_rank_takes_what_it_can_and_the_next_ranks_the_rest() -> None:
    ranked = [("umbrella", 50), ("globex", 60), ("initech", 100)]
    assert automatic_allocations(ranked, 100) == [
        Allocation("umbrella", 50),
        Allocation("globex", 50),
    ]


def test_one_supplier_with_enough_capacity_takes_it_all() -> None:
    assert automatic_allocations([("globex", 500), ("initech", 500)], 100) == [
        Allocation("globex", 100)
    ]


def test_quotes_that_cannot_cover_the_quantity_award_nothing() -> None:
    assert automatic_allocations([("globex", 40), ("initech", 59)], 100) is None
    assert automatic_allocations([], 1) is None


@given(
    st.lists(st.integers(min_value=0, max_value=1000), max_size=30),
    st.integers(min_value=1, max_value=5000),
)
def test_an_award_covers_exactly_the_quantity_within_capacities(
    capacities: list[int], quantity: int
) -> None:
    ranked = [(f"s{i}", c) for i, c in enumerate(capacities)]
    award = automatic_allocations(ranked, quantity)
    if sum(capacities) < quantity:
        assert award is None
        return
    assert award is not None
    assert sum(a.quantity for a in award) == quantity
    by_supplier = dict(ranked)
    assert all(0 < a.quantity <= by_supplier[a.supplier_id] for a in award)
    # Ranks are taken in order: every supplier before the last awarded one gave its all.
    order = [s for s, _ in ranked]
    last = order.index(award[-1].supplier_id)
    given_all = {a.supplier_id: a.quantity for a in award}
    assert all(given_all.get(s, 0) == by_supplier[s] for s in order[:last])
