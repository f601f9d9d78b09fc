"""Geometric diffs of revision pairs and three-way merges of concurrent edits."""

from services.design.diffs.api import DiffServicer
from services.design.diffs.application import DiffApplication
from services.design.diffs.domain import MergeState, RevisionDiff, RevisionMerge, merge_base
from services.design.diffs.jobs import DiffJobs, MergeJobs
from services.design.geometry.codec import diff_from_json, diff_to_json

__all__ = [
    "DiffApplication",
    "DiffJobs",
    "DiffServicer",
    "MergeJobs",
    "MergeState",
    "RevisionDiff",
    "RevisionMerge",
    "diff_from_json",
    "diff_to_json",
    "merge_base",
]
