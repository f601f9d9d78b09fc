"""Quorum rules of design reviews: worked examples and properties."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.design.reviews.domain import (
    Outcome,
    PolicyKind,
    QuorumPolicy,
    ReviewState,
    check_request,
    verdict,
)
from services.shared.errors import InvalidArgument

A, B, C = "acme", "globex", "initech"
REVIEWERS = [A, B, C]
TWO_OF_THREE = QuorumPolicy(PolicyKind.K_OF_N, 2, ())
ALL = QuorumPolicy(PolicyKind.ALL, 0, ())
APPROVE, CHANGES, REJECT = Outcome.APPROVE, Outcome.REQUEST_CHANGES, Outcome.REJECT


@pytest.mark.parametrize(
    ("policy", "latest", "expected"),
    [
        # Two of three: open until two approve, or until two no longer can.
        (TWO_OF_THREE, {}, None),
        (TWO_OF_THREE, {A: APPROVE}, None),
        (TWO_OF_THREE, {A: APPROVE, B: APPROVE}, ReviewState.APPROVED),
        (TWO_OF_THREE, {A: REJECT, B: APPROVE}, None),  # C can still make it two
        (TWO_OF_THREE, {A: REJECT, B: APPROVE, C: APPROVE}, ReviewState.APPROVED),
        (TWO_OF_THREE, {A: CHANGES, B: CHANGES}, ReviewState.CHANGES_REQUESTED),
        (TWO_OF_THREE, {A: CHANGES, B: REJECT}, ReviewState.REJECTED),
        # All: one non-approval decides it.
        (ALL, {A: APPROVE, B: APPROVE}, None),
        (ALL, {A: APPROVE, B: APPROVE, C: APPROVE}, ReviewState.APPROVED),
        (ALL, {A: CHANGES}, ReviewState.CHANGES_REQUESTED),
        # A required organization must approve, whatever the count.
        (QuorumPolicy(PolicyKind.K_OF_N, 2, (C,)), {A: APPROVE, B: APPROVE}, None),
        (
            QuorumPolicy(PolicyKind.K_OF_N, 2, (C,)),
            {A: APPROVE, C: APPROVE},
            ReviewState.APPROVED,
        ),
        (
            QuorumPolicy(PolicyKind.K_OF_N, 1, (C,)),
            {A: APPROVE, C: REJECT},
            ReviewState.REJECTED,
        ),
    ],
)
def test_worked_examples(
    policy: QuorumPolicy, latest: dict[str, Outcome], expected: ReviewState | None
) -> None:
    assert verdict(policy, REVIEWERS, latest) == expected


reviewer_sets = st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=8, unique=True)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[QuorumPolicy, list[str], dict[str, Outcome]]:
    reviewers = draw(reviewer_sets)
    kind = draw(st.sampled_from(PolicyKind))
    k = draw(st.integers(1, len(reviewers)))
    required = tuple(draw(st.lists(st.sampled_from(reviewers), unique=True, max_size=2)))
    decided = draw(st.lists(st.sampled_from(reviewers), unique=True))
    latest = {org: draw(st.sampled_from(Outcome)) for org in decided}
    return QuorumPolicy(kind, k, required), reviewers, latest


@given(scenarios())
def test_an_outcome_is_final_and_consistent(
    scenario: tuple[QuorumPolicy, list[str], dict[str, Outcome]],
) -> None:
    policy, reviewers, latest = scenario
    outcome = verdict(policy, reviewers, latest)
    approvals = {o for o, v in latest.items() if v is APPROVE}
    undecided = [o for o in reviewers if o not in latest]
    if outcome is ReviewState.APPROVED:
        assert len(approvals) >= policy.approvals_needed(reviewers)
        assert set(policy.required) <= approvals
    elif outcome is None:
        # Still open: some undecided organizations could approve it...
        assert undecided
        best = {**latest, **{o: APPROVE for o in undecided}}
        assert verdict(policy, reviewers, best) is ReviewState.APPROVED
    else:
        # ...and once decided against, no remaining decisions could approve it.
        best = {**latest, **{o: APPROVE for o in undecided}}
        assert verdict(policy, reviewers, best) is outcome
        assert (outcome is ReviewState.REJECTED) == (REJECT in latest.values())


def test_a_request_reports_every_problem() -> None:
    now = dt.datetime(2026, 11, 25, tzinfo=dt.UTC)
    with pytest.raises(InvalidArgument) as error:
        check_request(
            [A, A],
            QuorumPolicy(PolicyKind.K_OF_N, 3, (C,)),
            now - dt.timedelta(days=1),
            dt.timedelta(hours=-1),
            now,
        )
    fields = {v.field for v in error.value.violations}
    assert fields == {
        "review.reviewers",
        "review.policy.k",
        "review.policy.required_organizations",
        "review.deadline",
        "review.remind_before",
    }
