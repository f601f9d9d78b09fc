"""The diff and merge RPCs of DesignService (mixed into services.design.api.DesignServicer):
proto -> use case -> proto."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from cofab.design.v1 import design_pb2
from services.design.diffs.application import DiffApplication
from services.design.diffs.convert import diff_proto, merge_proto
from services.design.diffs.domain import RevisionDiff, RevisionMerge
from services.design.domain.ports import BlobStore
from services.design.downloads import download_responses
from services.shared.identity import Principal
from services.shared.server import current_principal

Context = Any  # grpc.aio.ServicerContext; the handlers do not use it directly
WATCH_POLL_SECONDS = 0.2
T = TypeVar("T", RevisionDiff, RevisionMerge)


async def _watch(
    principal: Principal,
    name: str,
    get: Callable[[Principal, str], T],
    peek: Callable[[Principal, str], T],
    done: Callable[[T], bool],
) -> AsyncIterator[T]:
    """The resource now (an audited read), then each change of its state until `done`."""
    current = await asyncio.to_thread(get, principal, name)
    yield current
    while not done(current):
        await asyncio.sleep(WATCH_POLL_SECONDS)
        latest = await asyncio.to_thread(peek, principal, name)
        if latest.state is not current.state:
            yield latest
        current = latest


class DiffServicer:
    """DiffRevisions, MergeRevisions and their reads."""

    _diffs: DiffApplication
    _blobs: BlobStore

    async def DiffRevisions(
        self, request: design_pb2.DiffRevisionsRequest, context: Context
    ) -> design_pb2.RevisionDiff:
        diff = await asyncio.to_thread(
            self._diffs.request_diff,
            current_principal(),
            request.design,
            request.revision_a,
            request.revision_b,
        )
        return diff_proto(diff)

    async def GetRevisionDiff(
        self, request: design_pb2.GetRevisionDiffRequest, context: Context
    ) -> design_pb2.RevisionDiff:
        diff = await asyncio.to_thread(self._diffs.get_diff, current_principal(), request.name)
        return diff_proto(diff)

    async def WatchRevisionDiff(
        self, request: design_pb2.WatchRevisionDiffRequest, context: Context
    ) -> AsyncIterator[design_pb2.RevisionDiff]:
        async for diff in _watch(
            current_principal(),
            request.name,
            self._diffs.get_diff,
            self._diffs.peek_diff,
            lambda d: d.state.finished,
        ):
            yield diff_proto(diff)

    async def DownloadRevisionDiff(
        self, request: design_pb2.DownloadRevisionDiffRequest, context: Context
    ) -> AsyncIterator[design_pb2.DownloadRevisionResponse]:
        found = await asyncio.to_thread(
            self._diffs.download_diff, current_principal(), request.name, request.artifact
        )
        async for response in download_responses(self._blobs, found):
            yield response

    async def MergeRevisions(
        self, request: design_pb2.MergeRevisionsRequest, context: Context
    ) -> design_pb2.RevisionMerge:
        merge = await asyncio.to_thread(
            self._diffs.merge,
            current_principal(),
            request.design,
            request.target_branch,
            request.source_revision,
            request.expected_head,
            request.request_id,
        )
        return merge_proto(merge)

    async def GetRevisionMerge(
        self, request: design_pb2.GetRevisionMergeRequest, context: Context
    ) -> design_pb2.RevisionMerge:
        merge = await asyncio.to_thread(self._diffs.get_merge, current_principal(), request.name)
        return merge_proto(merge)

    async def WatchRevisionMerge(
        self, request: design_pb2.WatchRevisionMergeRequest, context: Context
    ) -> AsyncIterator[design_pb2.RevisionMerge]:
        async for merge in _watch(
            current_principal(),
            request.name,
            self._diffs.get_merge,
            self._diffs.peek_merge,
            lambda m: m.state.settled,
        ):
            yield merge_proto(merge)

    async def AcceptMerge(
        self, request: design_pb2.AcceptMergeRequest, context: Context
    ) -> design_pb2.RevisionMerge:
        merge = await asyncio.to_thread(
            self._diffs.accept, current_principal(), request.name, request.request_id
        )
        return merge_proto(merge)

    async def DeclineMerge(
        self, request: design_pb2.DeclineMergeRequest, context: Context
    ) -> design_pb2.RevisionMerge:
        merge = await asyncio.to_thread(
            self._diffs.decline, current_principal(), request.name, request.request_id
        )
        return merge_proto(merge)
