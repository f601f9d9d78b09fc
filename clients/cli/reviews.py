"""`cofab review ...`: multi-company design reviews: request, follow, decide, extend, cancel.

A decision is recorded by the design service and counted by the review workflow once it has
accepted it, so `show` right after `decide` may still list the organization as pending.
"""

from __future__ import annotations

import argparse
import datetime as dt

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from clients.cli.common import (
    CliError,
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
from clients.cli.procurement import when
from cofab.design.v1 import review_pb2 as pb
from services.shared.config import Settings

STATES = {
    pb.Review.STATE_OPEN: "OPEN",
    pb.Review.STATE_APPROVED: "APPROVED",
    pb.Review.STATE_CHANGES_REQUESTED: "CHANGES_REQUESTED",
    pb.Review.STATE_REJECTED: "REJECTED",
    pb.Review.STATE_CANCELLED: "CANCELLED",
}
OUTCOMES = {
    "approve": pb.REVIEW_OUTCOME_APPROVE,
    "request-changes": pb.REVIEW_OUTCOME_REQUEST_CHANGES,
    "reject": pb.REVIEW_OUTCOME_REJECT,
}
OUTCOME_NAMES = {value: name for name, value in OUTCOMES.items()}
ON_NEW_REVISION = {
    "restart": pb.Review.ON_NEW_REVISION_RESTART,
    "cancel": pb.Review.ON_NEW_REVISION_CANCEL,
}
ON_NEW_REVISION_NAMES = {value: name for name, value in ON_NEW_REVISION.items()}
_REVISIONS = "/revisions/"


def _ts(value: dt.datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(value)
    return out


def _design_of(revision: str) -> str:
    """projects/{p}/designs/{d}/revisions/{r} -> projects/{p}/designs/{d}."""
    design, sep, rev = revision.partition(_REVISIONS)
    if not sep or not rev or "/" in rev or not design.startswith("projects/"):
        raise CliError(
            f"{revision!r} is not a revision name: projects/P/designs/D/revisions/R "
            "(see `cofab revision list`)"
        )
    return design


def _policy(args: argparse.Namespace) -> pb.QuorumPolicy:
    # The service checks the numbers (k within the reviewers, required ones among them); only
    # what argparse cannot express is checked here.
    if args.quorum == "k-of-n":
        if args.k is None:
            raise CliError("--quorum k-of-n needs --k N (how many organizations must approve)")
        kind = pb.QuorumPolicy.KIND_K_OF_N
    else:
        if args.k is not None:
            raise CliError("--k only applies to --quorum k-of-n")
        kind = pb.QuorumPolicy.KIND_ALL
    return pb.QuorumPolicy(
        kind=kind,
        k=args.k or 0,
        required_organizations=[organization_name(o) for o in args.required],
    )


def _quorum_text(review: pb.Review) -> str:
    policy = review.policy
    if policy.kind == pb.QuorumPolicy.KIND_K_OF_N:
        text = f"{policy.k} of {len(review.reviewers)} must approve"
    else:
        text = f"all {len(review.reviewers)} must approve"
    if policy.required_organizations:
        text += f", including {', '.join(policy.required_organizations)}"
    return text


def _summary_line(r: pb.Review) -> str:
    escalated = "  ESCALATED" if r.escalated else ""
    return (
        f"{r.name}  {STATES.get(r.state, '?')}  round {r.round}  "
        f"deadline {format_time(r.deadline)}{escalated}"
    )


def print_review(r: pb.Review) -> None:
    """The review, then each reviewer organization's decision in the current round (the
    latest one counts) and the decisions of earlier rounds as history."""
    print(_summary_line(r))
    print(f"  revision: {r.revision}")
    print(f"  requested by {r.requester_user or r.requester} on {format_time(r.create_time)}")
    if r.message:
        print(f"  message: {r.message}")
    remind = r.remind_before.ToTimedelta()
    on_new = ON_NEW_REVISION_NAMES.get(r.on_new_revision, "?")
    print(f"  quorum: {_quorum_text(r)}; reminders {remind} before; on a newer revision: {on_new}")
    if r.escalated:
        print("  the deadline passed without an outcome: the requester was told")
    if r.HasField("close_time"):
        print(f"  closed {format_time(r.close_time)}")
    current = {d.organization: d for d in r.decisions if d.round == r.round}
    for organization in r.reviewers:
        decision = current.get(organization)
        if decision is None:
            print(f"  {organization}: pending")
            continue
        comment = f"  {decision.comment!r}" if decision.comment else ""
        print(
            f"  {organization}: {OUTCOME_NAMES.get(decision.outcome, '?')} by {decision.user} "
            f"on {format_time(decision.decide_time)}{comment}"
        )
    for d in sorted((d for d in r.decisions if d.round != r.round), key=lambda d: d.round):
        print(
            f"  round {d.round} ({d.revision}): {d.organization} "
            f"{OUTCOME_NAMES.get(d.outcome, '?')}"
        )


def cmd_review_request(args: argparse.Namespace, settings: Settings) -> None:
    reviewers = [organization_name(o) for o in args.reviewer]
    review = pb.Review(
        revision=args.revision,
        reviewers=reviewers,
        policy=_policy(args),
        deadline=_ts(args.deadline),
        on_new_revision=ON_NEW_REVISION[args.on_new_revision],
        message=args.message,
    )
    if args.remind_before is not None:
        review.remind_before.CopyFrom(Duration(seconds=args.remind_before))
    with client(settings) as cofab:
        created = cofab.reviews.CreateReview(
            pb.CreateReviewRequest(
                parent=_design_of(args.revision), review=review, request_id=request_id()
            )
        )
    emit(args, created, lambda: print_review(created))


def cmd_review_list(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        pages = every_page(
            lambda token: cofab.reviews.ListReviews(
                pb.ListReviewsRequest(parent=args.design, page_size=100, page_token=token)
            ),
            "reviews",
        )
        emit_list(args, "reviews", pages, lambda r: print(_summary_line(r)))


def cmd_review_show(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        review = cofab.reviews.GetReview(pb.GetReviewRequest(name=args.review))
    emit(args, review, lambda: print_review(review))


def cmd_review_decide(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        review = cofab.reviews.DecideReview(
            pb.DecideReviewRequest(
                name=args.review,
                outcome=OUTCOMES[args.outcome],
                comment=args.comment,
                request_id=request_id(),
            )
        )

    def human() -> None:
        print(f"decision {args.outcome} sent; it counts once the review workflow accepts it")
        print_review(review)

    emit(args, review, human)


def cmd_review_extend(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        review = cofab.reviews.ExtendReview(
            pb.ExtendReviewRequest(
                name=args.review, deadline=_ts(args.deadline), request_id=request_id()
            )
        )
    emit(args, review, lambda: print_review(review))


def cmd_review_cancel(args: argparse.Namespace, settings: Settings) -> None:
    with client(settings) as cofab:
        review = cofab.reviews.CancelReview(
            pb.CancelReviewRequest(name=args.review, request_id=request_id())
        )
    emit(args, review, lambda: print_review(review))


def register(sub: Subcommands) -> None:
    """Adds `cofab review ...` to the parser."""
    review = sub.add_parser("review", help="multi-company design reviews")
    review_sub = review.add_subparsers(dest="review_command", required=True)
    p = command(
        review_sub, "request", cmd_review_request, "ask organizations to approve a revision", True
    )
    p.add_argument("revision", help="projects/{project}/designs/{design}/revisions/{revision}")
    p.add_argument(
        "--reviewer",
        action="append",
        required=True,
        help="a reviewer organization (repeatable), e.g. --reviewer globex --reviewer initech",
    )
    p.add_argument(
        "--quorum", choices=("all", "k-of-n"), default="all", help="who must approve (all)"
    )
    p.add_argument("--k", type=int, default=None, help="with --quorum k-of-n: how many")
    p.add_argument(
        "--required",
        action="append",
        default=[],
        help="an organization that must approve in any case (repeatable; also a --reviewer)",
    )
    p.add_argument(
        "--deadline", type=when, default=when("5d"), help="a date or duration, e.g. 5d (default)"
    )
    p.add_argument(
        "--remind-before",
        type=parse_duration,
        default=None,
        help="remind undecided organizations this long before the deadline, e.g. 1d",
    )
    p.add_argument("--on-new-revision", choices=sorted(ON_NEW_REVISION), default="restart")
    p.add_argument("--message", default="")
    p = command(review_sub, "list", cmd_review_list, "list a design's reviews, newest first", True)
    p.add_argument("design", help="projects/{project}/designs/{design}")
    p = command(review_sub, "show", cmd_review_show, "show a review and each decision", True)
    p.add_argument("review", help="projects/{project}/designs/{design}/reviews/{review}")
    p = command(
        review_sub, "decide", cmd_review_decide, "record your organization's decision", True
    )
    p.add_argument("review")
    p.add_argument("outcome", choices=list(OUTCOMES))
    p.add_argument("--comment", default="")
    p = command(
        review_sub, "extend", cmd_review_extend, "move the deadline later (requester)", True
    )
    p.add_argument("review")
    p.add_argument("--deadline", type=when, required=True, help="a date or duration, e.g. 7d")
    p = command(review_sub, "cancel", cmd_review_cancel, "cancel an open review (requester)", True)
    p.add_argument("review")
