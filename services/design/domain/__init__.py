"""The design service's domain: plain values and rules, no I/O."""

from services.design.domain.model import (
    Design,
    Membership,
    MembershipState,
    Project,
    accept,
    change_role,
    decline,
    expire,
    invite,
    remove,
)
from services.design.domain.ports import BlobStore, BlobUpload, GeometryChecks
from services.design.domain.revisions import (
    ArtifactRef,
    Branch,
    ProcessingError,
    PushHeader,
    Revision,
    RevisionState,
)

__all__ = [
    "ArtifactRef",
    "BlobStore",
    "BlobUpload",
    "Branch",
    "Design",
    "GeometryChecks",
    "Membership",
    "MembershipState",
    "ProcessingError",
    "Project",
    "PushHeader",
    "Revision",
    "RevisionState",
    "accept",
    "change_role",
    "decline",
    "expire",
    "invite",
    "remove",
]
