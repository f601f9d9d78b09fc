import datetime as dt

import pytest

from services.design import domain
from services.design.domain import MembershipState
from services.design.domain.model import invite_ttl
from services.shared.errors import FailedPrecondition, InvalidArgument
from services.shared.identity import Role

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def invitation(ttl: dt.timedelta = dt.timedelta(days=7)) -> domain.Membership:
    return domain.invite(
        "p1", "globex", Role.EDITOR, "inv1", "organizations/acme/users/a", ttl, NOW, existing=None
    )


def test_invitation_is_open_until_its_expiry() -> None:
    m = invitation()
    assert m.state is MembershipState.INVITED
    assert m.invite_expire_time == NOW + dt.timedelta(days=7)


def test_accept_before_expiry_activates() -> None:
    accepted = domain.accept(invitation(), NOW + dt.timedelta(days=6))
    assert accepted.state is MembershipState.ACTIVE
    assert accepted.invite_expire_time is None


def test_accept_after_expiry_fails() -> None:
    with pytest.raises(FailedPrecondition, match="expired"):
        domain.accept(invitation(), NOW + dt.timedelta(days=7))


def test_cannot_answer_twice() -> None:
    declined = domain.decline(invitation())
    with pytest.raises(FailedPrecondition, match="DECLINED"):
        domain.accept(declined, NOW)


def test_expire_only_after_time_ran_out() -> None:
    with pytest.raises(FailedPrecondition):
        domain.expire(invitation(), NOW + dt.timedelta(days=6))
    assert domain.expire(invitation(), NOW + dt.timedelta(days=7)).state is MembershipState.EXPIRED


def test_expire_of_an_answered_invitation_changes_nothing() -> None:
    accepted = domain.accept(invitation(), NOW)
    assert domain.expire(accepted, NOW + dt.timedelta(days=30)) == accepted


def test_members_and_invitees_cannot_be_invited_again() -> None:
    pending = invitation()
    with pytest.raises(FailedPrecondition, match="already invited"):
        domain.invite("p1", "globex", Role.VIEWER, "inv2", "u", dt.timedelta(days=1), NOW, pending)
    declined = domain.decline(pending)
    again = domain.invite(
        "p1", "globex", Role.VIEWER, "inv2", "u", dt.timedelta(days=1), NOW, declined
    )
    assert again.state is MembershipState.INVITED and again.invitation_id == "inv2"


def test_invite_ttl_bounds() -> None:
    assert invite_ttl(0) == dt.timedelta(days=7)
    with pytest.raises(InvalidArgument):
        invite_ttl(-5)
    with pytest.raises(InvalidArgument):
        invite_ttl(31 * 86400)
    # Past what a timedelta can hold: still the field's error, not an overflow.
    with pytest.raises(InvalidArgument, match="invite_ttl_seconds"):
        invite_ttl(2**62)


def test_the_last_active_owner_stays() -> None:
    owner = domain.accept(invitation(), NOW)
    owner = domain.change_role(owner, Role.OWNER, active_owners=2)
    with pytest.raises(FailedPrecondition) as caught:
        domain.remove(owner, active_owners=1)
    assert caught.value.violations[0].type == "LAST_OWNER"
    with pytest.raises(FailedPrecondition):
        domain.change_role(owner, Role.EDITOR, active_owners=1)
    assert domain.change_role(owner, Role.OWNER, active_owners=1) == owner  # no change
    assert domain.change_role(owner, Role.VIEWER, active_owners=2).role is Role.VIEWER
    removed = domain.remove(owner, active_owners=2)
    assert removed.state is MembershipState.REMOVED
    with pytest.raises(FailedPrecondition):
        domain.remove(removed, active_owners=2)
    # An open invitation may be withdrawn; it never counted as an owner.
    assert domain.remove(invitation(), active_owners=1).state is MembershipState.REMOVED
