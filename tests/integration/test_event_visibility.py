"""Issue 12: every event type the platform emits, driven on one real stack (outbox -> relay ->
Kafka -> feed writer -> EventFeedService), and what each organization in its audience receives
checked against what that organization may read through the RPCs (ENGINEERING.md habit 16).

The event types are the registry services/shared/events.py EVENT_TYPES, which make_envelope
enforces: a new event type is added there, and this test then fails until ROWS says what each
organization receiving it may see. The scenario must also emit every type at least once."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cadquery as cq
import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.protobuf.message import DecodeError, Message
from google.protobuf.timestamp_pb2 import Timestamp
from kafka import KafkaConsumer
from sqlalchemy import select

from clients.sdk import Cofab, connect, push_revision, wait_for, wait_for_diff, wait_for_merge
from cofab.design.v1 import comment_pb2, design_pb2, review_pb2
from cofab.design.v1 import events_pb2 as design_events
from cofab.events.v1 import feed_pb2
from cofab.events.v1.envelope_pb2 import EventEnvelope
from cofab.identity.v1 import events_pb2 as identity_events
from cofab.identity.v1 import identity_pb2 as ipb
from cofab.procurement.v1 import events_pb2 as procurement_events
from cofab.procurement.v1 import procurement_pb2 as pb
from cofab.supply.v1 import events_pb2 as supply_events
from cofab.supply.v1 import supply_pb2
from services.shared import accounts
from services.shared.db import outbox
from services.shared.events import EVENT_TYPES, all_topics, unpack
from services.shared.feed import visible_to
from tests.conftest import Account, make_account
from tests.integration.conftest import Stack
from tests.integration.test_design_api import create_design, create_project, invite
from tests.integration.test_event_feed import Feed
from tests.integration.test_procurement_api import create_item, quote_message, rfq_message
from tests.integration.test_revision_diff import plate
from tests.integration.test_supply_network_api import (
    make_edge,
    make_facility,
    make_item,
    report_strike,
)

WAIT_S = 300
PLATFORM = accounts.PLATFORM_ORGANIZATION


@dataclass
class World:
    """The organizations' clients and what the scenario made."""

    accounts: dict[str, Account]
    clients: dict[str, Cofab]
    service: Cofab
    names: dict[str, str] = field(default_factory=dict)

    def as_(self, org: str) -> Cofab:
        return self.service if org == PLATFORM else self.clients[org]

    def readable(self, org: str, call: Callable[[Cofab], object]) -> bool:
        try:
            call(self.as_(org))
        except grpc.RpcError as error:
            assert error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED)
            return False
        return True


Check = Callable[[World, str, EventEnvelope], None]


def payload(envelope: EventEnvelope, message_type: type[Message]) -> Message:
    return unpack(envelope, message_type)


# --- what each organization may read, asked through the RPCs -------------------------------


def member_of_subject_project(world: World, org: str, envelope: EventEnvelope) -> None:
    """Design events: the receiver is a member of the project and reads the subject itself."""
    if org == PLATFORM:
        return
    project = "/".join(envelope.subject.split("/")[:2])
    assert world.readable(
        org, lambda c: c.projects.GetProject(ipb.GetProjectRequest(name=project))
    ), f"{org} got {envelope.type} of {project} it cannot read"
    subject = envelope.subject
    parts = subject.split("/")
    getters: dict[str, Callable[[Cofab], object]] = {
        "designs": lambda c: c.designs.GetDesign(design_pb2.GetDesignRequest(name=subject)),
        "revisions": lambda c: c.designs.GetRevision(design_pb2.GetRevisionRequest(name=subject)),
        "reviews": lambda c: c.reviews.GetReview(review_pb2.GetReviewRequest(name=subject)),
        "comments": lambda c: c.comments.GetComment(comment_pb2.GetCommentRequest(name=subject)),
        "merges": lambda c: c.designs.GetRevisionMerge(
            design_pb2.GetRevisionMergeRequest(name=subject)
        ),
        "diffs": lambda c: c.designs.GetRevisionDiff(
            design_pb2.GetRevisionDiffRequest(name=subject)
        ),
    }
    kind = parts[-2]
    assert kind in getters, f"no reader for {subject}"
    assert world.readable(org, getters[kind]), f"{org} got {envelope.type} of {subject}"


def membership_party(world: World, org: str, envelope: EventEnvelope) -> None:
    """An invitation concerns the project's owner and the invited organization only."""
    event_types = {
        "identity.membership.invited": identity_events.MembershipInvited,
        "identity.membership.accepted": identity_events.MembershipAccepted,
        "identity.membership.declined": identity_events.MembershipDeclined,
        "identity.membership.expired": identity_events.MembershipExpired,
        "identity.membership.role_changed": identity_events.MembershipRoleChanged,
        "identity.membership.removed": identity_events.MembershipRemoved,
    }
    membership = payload(envelope, event_types[envelope.type]).membership  # type: ignore[attr-defined]
    invited = membership.organization
    assert org in (PLATFORM, "acme", invited.removeprefix("organizations/")), (org, invited)


def design_created(world: World, org: str, envelope: EventEnvelope) -> None:
    member_of_subject_project(world, org, envelope)
    sent = payload(envelope, design_events.DesignCreated).design  # type: ignore[attr-defined]
    read = world.as_(org).designs.GetDesign(design_pb2.GetDesignRequest(name=sent.name))
    assert (sent.name, sent.part_number) == (read.name, read.part_number)


def own_resource(name_of: Callable[[Message], str], message_type: type[Message]) -> Check:
    """Network data of an organization is its own: only it (Get* answers it alone) hears."""

    def check(world: World, org: str, envelope: EventEnvelope) -> None:
        name = name_of(payload(envelope, message_type))
        assert name.startswith(f"organizations/{org}/") or name == f"organizations/{org}", (
            org,
            name,
        )

    return check


def facility_created(world: World, org: str, envelope: EventEnvelope) -> None:
    sent = payload(envelope, supply_events.FacilityCreated).facility  # type: ignore[attr-defined]
    own_resource(lambda m: sent.name, supply_events.FacilityCreated)(world, org, envelope)
    read = world.as_(org).supply.GetFacility(supply_pb2.GetFacilityRequest(name=sent.name))
    assert sent == read


def item_changed(world: World, org: str, envelope: EventEnvelope) -> None:
    message_type = (
        supply_events.ItemCreated
        if envelope.type.endswith("created")
        else supply_events.ItemUpdated
    )
    item = payload(envelope, message_type).item  # type: ignore[attr-defined]
    assert item.name.startswith(f"organizations/{org}/")
    read = world.as_(org).supply.GetItem(supply_pb2.GetItemRequest(name=item.name))
    assert (item.name, item.design) == (read.name, read.design)


def edge_party(world: World, org: str, envelope: EventEnvelope) -> None:
    """Consent steps go to the two parties, and carry what GetSupplyEdge shows each of them."""
    edge = payload(envelope, supply_events.SupplyEdgeConsent).supply_edge  # type: ignore[attr-defined]
    parties = {edge.customer, "/".join(edge.facility.split("/")[:2])}
    assert f"organizations/{org}" in parties, (org, parties)
    read = world.as_(org).supply.GetSupplyEdge(supply_pb2.GetSupplyEdgeRequest(name=edge.name))
    read.state = edge.state  # it moved on since
    assert read == edge


def edge_created(world: World, org: str, envelope: EventEnvelope) -> None:
    edge = payload(envelope, supply_events.SupplyEdgeCreated).supply_edge  # type: ignore[attr-defined]
    assert edge.customer == f"organizations/{org}"  # an internal edge: the organization's own
    assert edge.facility.startswith(f"organizations/{org}/")


def edge_deleted(world: World, org: str, envelope: EventEnvelope) -> None:
    name = payload(envelope, supply_events.NetworkResourceDeleted).name  # type: ignore[attr-defined]
    assert org in world.names[f"parties:{name}"].split(","), (org, name)


def disruption_view(world: World, org: str, envelope: EventEnvelope) -> None:
    """The reporter sees what ListDisruptions shows it; a customer itself among the affected and
    nothing of the supplier's other customers, and only as a direct customer of the facility."""
    message_type = (
        supply_events.DisruptionReported
        if envelope.type.endswith("reported")
        else supply_events.DisruptionResolved
    )
    sent = payload(envelope, message_type).disruption  # type: ignore[attr-defined]
    reporter = sent.name.split("/")[1]
    if org == reporter:
        listed = world.as_(org).supply.ListDisruptions(
            supply_pb2.ListDisruptionsRequest(parent=f"organizations/{org}")
        )
        (read,) = [d for d in listed.disruptions if d.name == sent.name]
        assert list(sent.affected_customers) == list(read.affected_customers)
        assert sent.other_affected_customers == read.other_affected_customers
        return
    assert set(sent.affected_customers) <= {f"organizations/{org}"}
    assert sent.other_affected_customers == 0
    edges = world.as_(org).supply.ListSupplyEdges(
        supply_pb2.ListSupplyEdgesRequest(parent=f"organizations/{org}")
    )
    assert sent.facility in {e.facility for e in edges.supply_edges}


def impact_computed(world: World, org: str, envelope: EventEnvelope) -> None:
    sent = payload(envelope, supply_events.ImpactComputed)
    assert isinstance(sent, supply_events.ImpactComputed)
    if org == PLATFORM:
        return
    assert sent.customer == f"organizations/{org}"
    what_if = world.as_(org).supply.ComputeDisruptionImpact(
        supply_pb2.ComputeDisruptionImpactRequest(
            parent=f"organizations/{org}",
            facilities=[world.names["disrupted-facility"]],
            duration_days=30,
            capacity_factor=0.2,
        )
    )
    assert sorted(i.item for i in sent.items) == sorted(i.item for i in what_if.items)
    assert sent.other_items_hit == what_if.other_items_hit


def disruption_handled(world: World, org: str, envelope: EventEnvelope) -> None:
    summary = payload(envelope, supply_events.DisruptionHandled).summary  # type: ignore[attr-defined]
    if org == PLATFORM:
        return
    assert summary.units_at_risk == summary.revenue_at_risk == 0
    own = f"organizations/{org}/"
    assert all(r.startswith(own) for r in summary.rfqs)
    for rfq in summary.rfqs:
        world.as_(org).procurement.GetRfq(pb.GetRfqRequest(name=rfq))
    reporter = summary.disruption.split("/")[1]
    if org != reporter:
        assert list(summary.notified_organizations) == [f"organizations/{org}"]


def rfq_buyer(field_name: str, message_type: type[Message]) -> Check:
    """The buyer's own stream: only the buyer (or the platform acting for it) hears."""

    def check(world: World, org: str, envelope: EventEnvelope) -> None:
        rfq = getattr(payload(envelope, message_type), field_name)
        name = rfq if isinstance(rfq, str) else rfq.name
        buyer = name.split("/")[1]
        assert org in (buyer, PLATFORM), (org, name)
        if not isinstance(rfq, str):
            read = world.as_(org).procurement.GetRfq(pb.GetRfqRequest(name=name))
            assert list(rfq.invited_suppliers) == list(read.invited_suppliers)

    return check


def supplier_rfq_view(message_type: type[Message]) -> Check:
    """A supplier's copy names only that supplier among the invited, as GetRfq shows it."""

    def check(world: World, org: str, envelope: EventEnvelope) -> None:
        message = payload(envelope, message_type)
        rfq = message.rfq  # type: ignore[attr-defined]
        read = world.as_(org).procurement.GetRfq(pb.GetRfqRequest(name=rfq.name))
        if org in (read.buyer.removeprefix("organizations/"), PLATFORM):
            assert set(rfq.invited_suppliers) <= set(read.invited_suppliers)
            return
        assert message.supplier == f"organizations/{org}"  # type: ignore[attr-defined]
        assert list(rfq.invited_suppliers) == list(read.invited_suppliers) == [message.supplier]  # type: ignore[attr-defined]
        assert rfq.quote_count == read.quote_count == 0

    return check


def rfq_cancelled(world: World, org: str, envelope: EventEnvelope) -> None:
    sent = payload(envelope, procurement_events.RfqCancelled)
    assert isinstance(sent, procurement_events.RfqCancelled)
    buyer = sent.rfq.split("/")[1]
    assert sent.supplier in ("", f"organizations/{org}") or org in (buyer, PLATFORM)
    world.as_(org).procurement.GetRfq(pb.GetRfqRequest(name=sent.rfq))


def rfq_revised(world: World, org: str, envelope: EventEnvelope) -> None:
    supplier_rfq_view(procurement_events.RfqRevised)(world, org, envelope)
    sent = payload(envelope, procurement_events.RfqRevised)
    for quote in sent.invalidated_quotes:  # type: ignore[attr-defined]
        read = world.as_(org).procurement.GetQuote(pb.GetQuoteRequest(name=quote))
        assert read.supplier == f"organizations/{org}"


def rfq_closed(world: World, org: str, envelope: EventEnvelope) -> None:
    """The buyer learns how many quoted; a supplier neither that nor who else was invited."""
    sent = payload(envelope, procurement_events.RfqClosed)
    assert isinstance(sent, procurement_events.RfqClosed)
    read = world.as_(org).procurement.GetRfq(pb.GetRfqRequest(name=sent.rfq))
    assert sent.quote_count == read.quote_count
    if org not in (read.buyer.removeprefix("organizations/"), PLATFORM):
        assert read.quote_count == 0  # the supplier's GetRfq shows no count either
        assert list(read.invited_suppliers) == [f"organizations/{org}"]


def quote_own(world: World, org: str, envelope: EventEnvelope) -> None:
    quote = payload(envelope, procurement_events.QuoteChanged).quote  # type: ignore[attr-defined]
    assert quote.supplier == f"organizations/{org}" or org == PLATFORM
    read = world.as_(org).procurement.GetQuote(pb.GetQuoteRequest(name=quote.name))
    assert read.name == quote.name


def quote_received(world: World, org: str, envelope: EventEnvelope) -> None:
    """The buyer's alone, and it does not name who quoted (bids are sealed until close)."""
    sent = payload(envelope, procurement_events.QuoteReceived)
    assert isinstance(sent, procurement_events.QuoteReceived)
    buyer = sent.rfq.split("/")[1]
    assert org == buyer and envelope.organization == f"organizations/{buyer}"
    read = world.as_(org).procurement.GetRfq(pb.GetRfqRequest(name=sent.rfq))
    assert sent.invited_count == len(read.invited_suppliers)


def purchase_order(world: World, org: str, envelope: EventEnvelope) -> None:
    sent = payload(envelope, procurement_events.PurchaseOrderIssued)
    assert isinstance(sent, procurement_events.PurchaseOrderIssued)
    if org in (sent.buyer.removeprefix("organizations/"), PLATFORM):
        return
    assert sent.allocation.supplier == f"organizations/{org}"
    read = world.as_(org).procurement.GetRfq(pb.GetRfqRequest(name=sent.rfq))
    assert list(read.allocations) == [sent.allocation]


ROWS: dict[str, Check] = {
    "identity.membership.invited": membership_party,
    "identity.membership.accepted": membership_party,
    "identity.membership.declined": membership_party,
    "identity.membership.expired": membership_party,
    "identity.membership.role_changed": membership_party,
    "identity.membership.removed": membership_party,
    "design.design.created": design_created,
    "design.design.updated": member_of_subject_project,
    "design.revision.pushed": member_of_subject_project,
    "design.revision.validated": member_of_subject_project,
    "design.revision.released": member_of_subject_project,
    "design.revision.diffed": member_of_subject_project,
    "design.merged": member_of_subject_project,
    "design.merge.conflicted": member_of_subject_project,
    "design.comment.added": member_of_subject_project,
    "design.review.requested": member_of_subject_project,
    "design.review.decision_submitted": member_of_subject_project,
    "design.review.extended": member_of_subject_project,
    "design.review.cancel_requested": member_of_subject_project,
    "design.review.reminder": member_of_subject_project,
    "design.review.escalated": member_of_subject_project,
    "design.review.restarted": member_of_subject_project,
    "design.review.closed": member_of_subject_project,
    "design.review.superseded": member_of_subject_project,
    "supply.facility.created": facility_created,
    "supply.capability.created": own_resource(
        lambda m: m.capability.name,  # type: ignore[attr-defined]
        supply_events.CapabilityCreated,
    ),
    "supply.capability.deleted": own_resource(
        lambda m: m.name,  # type: ignore[attr-defined]
        supply_events.NetworkResourceDeleted,
    ),
    "supply.item.created": item_changed,
    "supply.item.updated": item_changed,
    "supply.edge.created": edge_created,
    "supply.edge.deleted": edge_deleted,
    "supply.edge.proposed": edge_party,
    "supply.edge.confirmed": edge_party,
    "supply.edge.declined": edge_party,
    "supply.edge.withdrawn": edge_party,
    "supply.network.imported": own_resource(
        lambda m: m.organization,  # type: ignore[attr-defined]
        supply_events.NetworkImported,
    ),
    "supply.disruption.reported": disruption_view,
    "supply.disruption.resolved": disruption_view,
    "supply.disruption.handled": disruption_handled,
    "supply.impact.computed": impact_computed,
    "procurement.rfq.created": rfq_buyer("rfq", procurement_events.RfqCreated),
    "procurement.rfq.published": rfq_buyer("rfq", procurement_events.RfqPublished),
    "procurement.rfq.opened": supplier_rfq_view(procurement_events.RfqOpened),
    "procurement.rfq.closed": rfq_closed,
    "procurement.rfq.cancelled": rfq_cancelled,
    "procurement.rfq.revised": rfq_revised,
    "procurement.rfq.awarded": rfq_buyer("rfq", procurement_events.RfqAwarded),
    "procurement.award.proposed": rfq_buyer("rfq", procurement_events.AwardProposed),
    "procurement.purchase_order.issued": purchase_order,
    "procurement.quote.submitted": quote_own,
    "procurement.quote.updated": quote_own,
    "procurement.quote.withdrawn": quote_own,
    "procurement.quote.received": quote_received,
}


# --- the scenario ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("visibility-parts")
    shapes = {
        "base": plate(),
        "left": plate((-20, 0, 6)),
        "right": plate((20, 0, 6)),
        "left-big": plate((-20, 0, 10)),
    }
    for name, shape in shapes.items():
        cq.exporters.export(shape, str(folder / f"{name}.step"))
    return {p.stem: p for p in folder.iterdir()}


def in_days(days: float) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(dt.datetime.now(dt.UTC) + dt.timedelta(days=days))
    return out


def pushed(cofab: Cofab, design: str, path: Path, base: str = "", branch: str = "") -> str:
    revision = push_revision(cofab, design, path, base_revision=base, branch=branch)
    done = wait_for(cofab, revision.name, timeout=WAIT_S)
    assert done.state == design_pb2.Revision.STATE_SUCCEEDED, done.error.message
    return str(done.name)


def drive_design(world: World, parts: dict[str, Path]) -> None:
    acme, globex, initech = (world.clients[o] for o in ("acme", "globex", "initech"))
    project = create_project(acme).name
    invite(acme, project, "globex")
    globex.projects.AcceptMembership(
        ipb.AcceptMembershipRequest(name=f"{project}/memberships/globex")
    )
    invite(acme, project, "initech")
    initech.projects.DeclineMembership(
        ipb.DeclineMembershipRequest(name=f"{project}/memberships/initech")
    )
    invite(acme, project, "umbrella", ttl=1)
    time.sleep(1.5)
    world.service.projects.ExpireMembership(
        ipb.ExpireMembershipRequest(name=f"{project}/memberships/umbrella")
    )
    # A partner's role lowered, then the partner removed, in a project of its own.
    side = create_project(acme, "Side program").name
    invite(acme, side, "globex")
    globex.projects.AcceptMembership(ipb.AcceptMembershipRequest(name=f"{side}/memberships/globex"))
    acme.projects.UpdateMembership(
        ipb.UpdateMembershipRequest(
            membership=ipb.Membership(name=f"{side}/memberships/globex", role=ipb.ROLE_VIEWER),
            update_mask=field_mask_pb2.FieldMask(paths=["role"]),
        )
    )
    acme.projects.DeleteMembership(ipb.DeleteMembershipRequest(name=f"{side}/memberships/globex"))
    design = create_design(acme, project).name
    world.names["design"] = design
    acme.designs.UpdateDesign(
        design_pb2.UpdateDesignRequest(
            design=design_pb2.Design(name=design, display_name="Bracket, v2"),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
        )
    )
    base = pushed(acme, design, parts["base"])
    acme.designs.ReleaseRevision(design_pb2.ReleaseRevisionRequest(name=base))
    world.names["released"] = base
    left = pushed(acme, design, parts["left"], base=base)
    world.names["left"] = left
    diff = acme.designs.DiffRevisions(
        design_pb2.DiffRevisionsRequest(design=design, revision_a=base, revision_b=left)
    )
    wait_for_diff(acme, diff.name, timeout=WAIT_S)
    acme.comments.CreateComment(
        comment_pb2.CreateCommentRequest(
            parent=left,
            comment=comment_pb2.Comment(
                body="enough edge distance?",
                anchor=comment_pb2.CommentAnchor(point=design_pb2.Vector3(x=-20, y=0, z=4)),
            ),
        )
    )
    review = acme.reviews.CreateReview(
        review_pb2.CreateReviewRequest(
            parent=design,
            review=review_pb2.Review(
                revision=left,
                reviewers=["organizations/globex"],
                deadline=in_days(5),
                on_new_revision=review_pb2.Review.ON_NEW_REVISION_RESTART,
            ),
        )
    ).name
    globex.reviews.DecideReview(
        review_pb2.DecideReviewRequest(name=review, outcome=review_pb2.REVIEW_OUTCOME_APPROVE)
    )
    acme.reviews.ExtendReview(review_pb2.ExtendReviewRequest(name=review, deadline=in_days(6)))
    progress = review_pb2.RecordReviewProgressRequest
    world.service.reviews.RecordReviewProgress(
        progress(
            name=review,
            kind=progress.KIND_REMINDED,
            organizations=["organizations/globex"],
            request_id="remind-1",
        )
    )
    world.service.reviews.RecordReviewProgress(
        progress(name=review, kind=progress.KIND_ESCALATED, request_id="escalate-1")
    )
    # Disjoint edits merge; accepting the merge supersedes the open review on main.
    theirs = pushed(globex, design, parts["right"], base=base, branch="globex")
    merge = globex.designs.MergeRevisions(
        design_pb2.MergeRevisionsRequest(design=design, source_revision=theirs)
    )
    merged = wait_for_merge(globex, merge.name, timeout=WAIT_S)
    assert merged.state == design_pb2.RevisionMerge.STATE_PROPOSED, merged.error.message
    wait_for(globex, merged.merged_revision, timeout=WAIT_S)
    globex.designs.AcceptMerge(design_pb2.AcceptMergeRequest(name=merge.name))
    world.service.reviews.RecordReviewProgress(
        progress(
            name=review,
            kind=progress.KIND_RESTARTED,
            revision=merged.merged_revision,
            round=2,
            request_id="restart-1",
        )
    )
    world.service.reviews.RecordReviewProgress(
        progress(
            name=review,
            kind=progress.KIND_CLOSED,
            state=review_pb2.Review.STATE_APPROVED,
            request_id="close-1",
        )
    )
    clash = pushed(acme, design, parts["left-big"], base=base, branch="clash")
    conflicted = wait_for_merge(
        acme,
        acme.designs.MergeRevisions(
            design_pb2.MergeRevisionsRequest(design=design, source_revision=clash)
        ).name,
        timeout=WAIT_S,
    )
    assert conflicted.state == design_pb2.RevisionMerge.STATE_CONFLICTED
    second = acme.reviews.CreateReview(
        review_pb2.CreateReviewRequest(
            parent=design,
            review=review_pb2.Review(
                revision=merged.merged_revision,
                reviewers=["organizations/globex"],
                deadline=in_days(5),
            ),
        )
    ).name
    acme.reviews.CancelReview(review_pb2.CancelReviewRequest(name=second))
    world.names["next-revision"] = merged.merged_revision
    acme.designs.ReleaseRevision(design_pb2.ReleaseRevisionRequest(name=merged.merged_revision))


def drive_supply(world: World) -> None:
    acme, globex, initech, umbrella = (
        world.clients[o] for o in ("acme", "globex", "initech", "umbrella")
    )
    plant = make_facility(globex, "globex")
    world.names["disrupted-facility"] = plant
    globex.supply.CreateCapability(
        supply_pb2.CreateCapabilityRequest(
            parent=plant,
            capability=supply_pb2.Capability(process="stamping", monthly_capacity=500),
        )
    )
    spare = globex.supply.CreateCapability(
        supply_pb2.CreateCapabilityRequest(
            parent=plant,
            capability=supply_pb2.Capability(process="welding", monthly_capacity=10),
        )
    )
    globex.supply.DeleteCapability(supply_pb2.DeleteCapabilityRequest(name=spare.name))
    bracket = make_item(globex, "globex", "gx-bracket", weekly_demand=50, inventory_weeks=1)
    globex.supply.UpdateItem(
        supply_pb2.UpdateItemRequest(
            item=supply_pb2.Item(name=bracket, display_name="Bracket B"),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
        )
    )
    internal = make_edge(globex, "globex", "gx-internal", plant, bracket, "globex")
    world.names[f"parties:{internal}"] = "globex"
    globex.supply.DeleteSupplyEdge(supply_pb2.DeleteSupplyEdgeRequest(name=internal))
    car = make_item(acme, "acme", "car", end_item=True, unit_revenue=100, weekly_demand=10)
    make_edge(
        globex, "globex", "gx-to-acme", plant, bracket, "acme", acme, share=1, monthly_volume=200
    )
    acme.supply.UpdateItem(
        supply_pb2.UpdateItemRequest(
            item=supply_pb2.Item(
                name=car, components=[supply_pb2.BomLine(component=bracket, quantity=2)]
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["components"]),
        )
    )
    claim = make_edge(
        initech, "initech", "claim", plant, make_item(initech, "initech", "w"), "initech"
    )
    globex.supply.DeclineSupplyEdge(supply_pb2.DeclineSupplyEdgeRequest(name=claim))
    offer = make_edge(globex, "globex", "offer", plant, bracket, "initech")
    globex.supply.WithdrawSupplyEdge(supply_pb2.WithdrawSupplyEdgeRequest(name=offer))
    rows = [
        {"kind": "facility", "id": "um-plant", "display_name": "Umbrella", "region": "asia-east",
         "country_code": "JP", "latitude": 35.0, "longitude": 139.0},
        {"kind": "item", "id": "um-blank", "display_name": "Blank"},
        {"kind": "edge", "id": "um-to-globex", "facility": "um-plant", "item": "um-blank",
         "customer": "globex", "share": 1, "monthly_volume": 10},
    ]  # fmt: skip
    umbrella.supply.ImportNetwork(
        iter(
            [
                supply_pb2.ImportNetworkRequest(
                    header=supply_pb2.ImportNetworkRequest.Header(
                        parent="organizations/umbrella", format=supply_pb2.NETWORK_FORMAT_JSON_LINES
                    )
                ),
                supply_pb2.ImportNetworkRequest(
                    chunk="".join(json.dumps(r) + "\n" for r in rows).encode()
                ),
            ]
        )
    )
    disruption = report_strike(globex, plant).name
    record = supply_pb2.RecordDisruptionProgressRequest
    world.service.supply.RecordDisruptionProgress(
        record(
            name=disruption,
            kind=record.KIND_NOTIFIED,
            customer="organizations/acme",
            request_id="notify-acme",
        )
    )
    world.service.supply.RecordDisruptionProgress(
        record(
            name=disruption,
            kind=record.KIND_HANDLED,
            summary=supply_pb2.DisruptionSummary(
                items_hit=2,
                units_at_risk=160,
                revenue_at_risk=16000,
                notified_organizations=["organizations/acme"],
                unsourced_items=[bracket],
            ),
            request_id="handled",
        )
    )
    globex.supply.ResolveDisruption(supply_pb2.ResolveDisruptionRequest(name=disruption))


def drive_procurement(world: World) -> None:
    acme, globex, initech = (world.clients[o] for o in ("acme", "globex", "initech"))
    panel = create_item(acme, "acme", "panel")
    rfq = acme.procurement.CreateRfq(
        pb.CreateRfqRequest(
            parent="organizations/acme", rfq=rfq_message(panel, ["globex", "initech"])
        )
    )
    acme.procurement.OpenRfq(pb.OpenRfqRequest(name=rfq.name))
    quote = globex.procurement.SubmitQuote(
        pb.SubmitQuoteRequest(parent=rfq.name, quote=quote_message(10.0, 5, 100))
    )
    globex.procurement.UpdateQuote(
        pb.UpdateQuoteRequest(quote=quote_message(9.5, 5, 100, name=quote.name))
    )
    other = initech.procurement.SubmitQuote(
        pb.SubmitQuoteRequest(parent=rfq.name, quote=quote_message(12.0, 4, 100))
    )
    initech.procurement.WithdrawQuote(pb.WithdrawQuoteRequest(name=other.name))
    acme.procurement.CloseRfq(pb.CloseRfqRequest(name=rfq.name))
    acme.procurement.AwardRfq(
        pb.AwardRfqRequest(
            name=rfq.name,
            allocations=[pb.Allocation(supplier="organizations/globex", quantity=100)],
        )
    )
    # The platform proposes an award the buyer approves.
    proposed = acme.procurement.CreateRfq(
        pb.CreateRfqRequest(
            parent="organizations/acme",
            rfq=rfq_message(
                panel, ["globex"], award_policy=pb.Rfq.AWARD_POLICY_AUTOMATIC_AFTER_APPROVAL
            ),
        )
    )
    acme.procurement.OpenRfq(pb.OpenRfqRequest(name=proposed.name))
    globex.procurement.SubmitQuote(
        pb.SubmitQuoteRequest(parent=proposed.name, quote=quote_message(9.0, 5, 100))
    )
    acme.procurement.CloseRfq(pb.CloseRfqRequest(name=proposed.name))
    world.service.procurement.ProposeAward(
        pb.ProposeAwardRequest(
            name=proposed.name,
            allocations=[pb.Allocation(supplier="organizations/globex", quantity=100)],
        )
    )
    cancelled = acme.procurement.CreateRfq(
        pb.CreateRfqRequest(parent="organizations/acme", rfq=rfq_message(panel, ["initech"]))
    )
    acme.procurement.OpenRfq(pb.OpenRfqRequest(name=cancelled.name))
    acme.procurement.CancelRfq(pb.CancelRfqRequest(name=cancelled.name, reason="not needed"))
    # Moved to a newer released revision of its design: the quotes on the old one lapse.
    designed = create_item(acme, "acme", "bracket-designed", design=world.names["design"])
    pinned = acme.procurement.CreateRfq(
        pb.CreateRfqRequest(
            parent="organizations/acme",
            rfq=rfq_message(designed, ["globex"], design_revision=world.names["released"]),
        )
    )
    acme.procurement.OpenRfq(pb.OpenRfqRequest(name=pinned.name))
    globex.procurement.SubmitQuote(
        pb.SubmitQuoteRequest(parent=pinned.name, quote=quote_message(8.0, 5, 100))
    )
    acme.procurement.ReviseRfq(
        pb.ReviseRfqRequest(
            name=pinned.name, design_revision=world.names["next-revision"], reason="merged"
        )
    )


def outbox_events(stack: Stack) -> list[EventEnvelope]:
    with stack.engine.connect() as conn:
        payloads = conn.scalars(select(outbox.c.payload).order_by(outbox.c.seq)).all()
    return [EventEnvelope.FromString(p) for p in payloads]


def kafka_events(bootstrap: str, ids: set[str], timeout: float = 120.0) -> dict[str, bytes]:
    """The records carrying `ids`, as Kafka delivers them (every area topic, from the start)."""
    consumer = KafkaConsumer(
        *[t for t in all_topics() if not t.endswith("deadletter")],
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    found: dict[str, bytes] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(found) < len(ids) and time.monotonic() < deadline:
            for records in consumer.poll(1000).values():
                for record in records:
                    try:
                        envelope = EventEnvelope.FromString(record.value)
                    except DecodeError:
                        continue  # another test's deliberately malformed record
                    if envelope.id in ids:
                        found[envelope.id] = record.value
    finally:
        consumer.close()
    return found


def feed_of(
    feed: Feed, account: Account, ours: set[str], expected: int, timeout: float = 120.0
) -> list[bytes]:
    """The organization's feed entries of this test's events (ids `ours`: the broker outlives a
    test, and the writer reads it from the start), once the writer caught up with `expected`."""
    deadline = time.monotonic() + timeout
    while True:
        stream = feed.stub.StreamEvents(
            feed_pb2.StreamEventsRequest(),
            metadata=(("authorization", f"Bearer {account.token}"),),
            timeout=30,
        )
        got = [r.event.SerializeToString() for r in stream if r.event.id in ours]
        if len(got) >= expected or time.monotonic() > deadline:
            return got
        time.sleep(0.5)


@pytest.fixture
def world(stack: Stack) -> Iterator[World]:
    umbrella = make_account(stack.engine, "umbrella", "uma", admin=True)
    hooli = make_account(stack.engine, "hooli", "hank", admin=True)
    token = accounts.ensure_service_account(stack.engine, None)
    assert token is not None
    accounts_by_org = {
        "acme": stack.acme,
        "globex": stack.globex,
        "initech": stack.initech,
        "umbrella": umbrella,
        "hooli": hooli,
    }
    clients = {
        org: connect(a.token, stack.design.address, stack.supply.address)
        for org, a in accounts_by_org.items()
    }
    service = connect(token, stack.design.address, stack.supply.address)
    built = World(accounts_by_org, clients, service)
    try:
        yield built
    finally:
        for client in clients.values():
            client.close()
        service.close()


def test_every_event_type_reaches_exactly_whom_its_content_is_readable_by(
    stack: Stack, world: World, parts: dict[str, Path], kafka_bootstrap: str, tmp_path: Path
) -> None:
    # A new event type without a row fails here, before anything runs.
    assert set(ROWS) == set(EVENT_TYPES), (
        f"rows missing for {sorted(set(EVENT_TYPES) - set(ROWS))}, "
        f"rows without an event type: {sorted(set(ROWS) - set(EVENT_TYPES))}"
    )
    feed = Feed(stack.engine, kafka_bootstrap, tmp_path)
    try:
        drive_design(world, parts)
        drive_supply(world)
        drive_procurement(world)

        emitted = outbox_events(stack)
        assert {e.type for e in emitted} == set(EVENT_TYPES), (
            f"not driven: {sorted(set(EVENT_TYPES) - {e.type for e in emitted})}"
        )
        # On Kafka, each event exactly as the service wrote it.
        on_kafka = kafka_events(kafka_bootstrap, {e.id for e in emitted})
        assert {e.id: e.SerializeToString() for e in emitted} == on_kafka

        # On each organization's feed: exactly the events it is in the audience of, as sent.
        audience: dict[str, list[bytes]] = defaultdict(list)
        for envelope in emitted:
            for org in visible_to(envelope):
                audience[org].append(envelope.SerializeToString())
        for org, account in world.accounts.items():
            got = feed_of(feed, account, set(on_kafka), len(audience[org]))
            assert sorted(got) == sorted(audience[org]), org
        assert audience["hooli"] == []  # the outsider hears nothing at all

        # And what each receiver got is what the RPCs let it read. An event addressed to one
        # organization (a per-organization view) is that organization's view; the
        # organization whose action caused it receives it too (the envelope's rule), so it is
        # checked against the addressee's rights, and the other receiver must be the actor.
        checked: dict[str, int] = defaultdict(int)
        for envelope in emitted:
            for org in visible_to(envelope):
                reader = org
                if len(envelope.audience) == 1:
                    reader = envelope.audience[0].removeprefix("organizations/")
                    assert org == reader or envelope.organization == f"organizations/{org}", (
                        envelope.type,
                        org,
                    )
                ROWS[envelope.type](world, reader, envelope)
                checked[envelope.type] += 1
        assert set(checked) == set(EVENT_TYPES)
    finally:
        feed.close()
