"""Diffs of revision pairs and merges of concurrent edits: values and rules. Plain Python."""

from __future__ import annotations

import datetime as dt
import enum
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from services.design.domain.revisions import (
    ArtifactRef,
    ProcessingError,
    Revision,
    RevisionState,
)
from services.design.geometry.types import Conflict, DiffResult
from services.shared.errors import FailedPrecondition, PreconditionViolation

DESIGN_PATTERN = "projects/{project}/designs/{design}"
DIFF_PATTERN = "projects/{project}/designs/{design}/revisions/{revision_b}/diffs/{revision_a}"
MERGE_PATTERN = "projects/{project}/designs/{design}/merges/{merge}"
DIFF_ARTIFACT_MEDIA_TYPES = {"diff.png": "image/png", "diff.glb": "model/gltf-binary"}


class MergeState(enum.Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    PROPOSED = "PROPOSED"
    CONFLICTED = "CONFLICTED"
    FAILED = "FAILED"
    ACCEPTED = "ACCEPTED"
    DECLINED = "DECLINED"

    @property
    def settled(self) -> bool:
        """No longer changes by itself (only a person's accept or decline moves it on)."""
        return self not in (MergeState.PENDING, MergeState.RUNNING)


@dataclass(frozen=True)
class RevisionDiff:
    """The comparison of revision_a (before) with revision_b (after); one per pair. Its states
    are those of a revision's processing."""

    id: str
    project_id: str
    design_id: str
    revision_a: str
    revision_b: str
    requester: str
    state: RevisionState
    create_time: dt.datetime
    update_time: dt.datetime
    carry_comments: bool = False
    error: ProcessingError | None = None
    result: DiffResult | None = None
    artifacts: tuple[ArtifactRef, ...] = ()
    attempts: int = 0

    @property
    def design_name(self) -> str:
        return f"projects/{self.project_id}/designs/{self.design_id}"

    @property
    def name(self) -> str:
        return diff_name(self.project_id, self.design_id, self.revision_a, self.revision_b)

    def revision_name(self, revision_id: str) -> str:
        return f"{self.design_name}/revisions/{revision_id}"

    def artifact(self, name: str) -> ArtifactRef | None:
        return next((a for a in self.artifacts if a.name == name), None)


@dataclass(frozen=True)
class RevisionMerge:
    """Merging `source` into `target_branch`, whose head was `ours` when asked; `base` is their
    nearest common ancestor; `merged` the new revision once PROPOSED."""

    id: str
    project_id: str
    design_id: str
    target_branch: str
    base: str
    ours: str
    source: str
    author: str
    state: MergeState
    create_time: dt.datetime
    update_time: dt.datetime
    merged: str | None = None
    error: ProcessingError | None = None
    conflict: Conflict | None = None
    ours_diff: DiffResult | None = None
    theirs_diff: DiffResult | None = None
    attempts: int = 0

    @property
    def design_name(self) -> str:
        return f"projects/{self.project_id}/designs/{self.design_id}"

    @property
    def name(self) -> str:
        return f"{self.design_name}/merges/{self.id}"

    def revision_name(self, revision_id: str | None) -> str:
        return f"{self.design_name}/revisions/{revision_id}" if revision_id else ""


def diff_name(project_id: str, design_id: str, revision_a: str, revision_b: str) -> str:
    """Deterministic per pair, so asking twice names the same diff."""
    return f"projects/{project_id}/designs/{design_id}/revisions/{revision_b}/diffs/{revision_a}"


def require_comparable(revision: Revision, field: str) -> None:
    """A diff or merge needs a revision's artifacts: it must have SUCCEEDED."""
    if revision.state is RevisionState.SUCCEEDED:
        return
    if revision.state is RevisionState.FAILED:
        reason = revision.error.message if revision.error else "processing failed"
        message = f"{field} {revision.name} FAILED processing ({reason}); it cannot be compared"
    else:
        message = (
            f"{field} {revision.name} is still being processed "
            f"({revision.state.value}); retry once it SUCCEEDED"
        )
    raise FailedPrecondition(
        message,
        [
            PreconditionViolation(
                "REVISION_STATE", revision.name, f"revision is {revision.state.value}"
            )
        ],
    )


def merge_base(parents: Mapping[str, Sequence[str]], ours: str, theirs: str) -> str | None:
    """The nearest common ancestor of two revisions in the DAG (each counts as its own
    ancestor): of the common ancestors, the one with the fewest steps from both; ties go to the
    smallest id so the answer is deterministic. None when the histories never meet."""
    from_ours = _distances(parents, ours)
    from_theirs = _distances(parents, theirs)
    common = from_ours.keys() & from_theirs.keys()
    if not common:
        return None
    return min(common, key=lambda r: (from_ours[r] + from_theirs[r], r))


def _distances(parents: Mapping[str, Sequence[str]], start: str) -> dict[str, int]:
    seen = {start: 0}
    queue = deque([start])
    while queue:
        current = queue.popleft()
        for parent in parents.get(current, ()):
            if parent not in seen:
                seen[parent] = seen[current] + 1
                queue.append(parent)
    return seen
