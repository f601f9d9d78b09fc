"""Short revision names in the CLI: a branch, `branch~N` and git-style id prefixes, resolved
against a design's branches and revisions (a fake of the design service's three reads)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from clients.cli import exits
from clients.cli.common import CliError
from clients.cli.names import resolve_revision
from cofab.design.v1 import design_pb2 as pb

DESIGN = "projects/p/designs/d"


def rev(rid: str, *parents: str) -> pb.Revision:
    return pb.Revision(
        name=f"{DESIGN}/revisions/{rid}", parents=[f"{DESIGN}/revisions/{p}" for p in parents]
    )


@dataclass
class FakeDesigns:
    revisions: list[pb.Revision]
    heads: dict[str, str] = field(default_factory=dict)

    def ListBranches(self, request: pb.ListBranchesRequest) -> pb.ListBranchesResponse:
        return pb.ListBranchesResponse(
            branches=[
                pb.Branch(name=f"{DESIGN}/branches/{b}", head=f"{DESIGN}/revisions/{h}")
                for b, h in self.heads.items()
            ]
        )

    def GetRevision(self, request: pb.GetRevisionRequest) -> pb.Revision:
        return next(r for r in self.revisions if r.name == request.name)

    def ListRevisions(self, request: pb.ListRevisionsRequest) -> pb.ListRevisionsResponse:
        return pb.ListRevisionsResponse(revisions=self.revisions)


@dataclass
class FakeCofab:
    designs: Any


@pytest.fixture
def cofab() -> Any:
    history = [rev("a1f0"), rev("b2e1", "a1f0"), rev("b2c3", "b2e1"), rev("c4d5", "a1f0")]
    return FakeCofab(FakeDesigns(history, {"main": "b2c3", "feature": "c4d5"}))


@pytest.mark.parametrize(
    ("ref", "resolved"),
    [
        ("main", "b2c3"),
        ("main~1", "b2e1"),
        ("main~2", "a1f0"),
        ("feature", "c4d5"),
        ("a1", "a1f0"),
        ("b2e", "b2e1"),
        (f"{DESIGN}/revisions/zzz", "zzz"),
    ],
)
def test_refs_resolve_to_revision_names(cofab: Any, ref: str, resolved: str) -> None:
    assert resolve_revision(cofab, DESIGN, ref) == f"{DESIGN}/revisions/{resolved}"


@pytest.mark.parametrize(
    ("ref", "code", "says"),
    [
        ("b2", exits.EXIT_USAGE, "names more than one branch or revision"),
        ("ffff", exits.EXIT_NOT_FOUND, "is no branch or revision"),
        ("main~3", exits.EXIT_NOT_FOUND, "has no parent"),
    ],
)
def test_unknown_and_ambiguous_refs_are_refused(cofab: Any, ref: str, code: int, says: str) -> None:
    with pytest.raises(CliError) as refused:
        resolve_revision(cofab, DESIGN, ref)
    assert refused.value.exit_code == code and says in str(refused.value)
