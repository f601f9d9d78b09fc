"""Streaming a blob as DownloadRevisionResponse messages: revisions' files and diffs' pictures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from cofab.design.v1 import design_pb2
from services.design.domain.ports import BlobStore
from services.design.revisions import Download

CHUNK_BYTES = 1 << 20


async def download_responses(
    blobs: BlobStore, found: Download
) -> AsyncIterator[design_pb2.DownloadRevisionResponse]:
    """The blob in chunks; the first message also carries media type, size and sha256 (and is
    sent even for an empty blob)."""
    chunks = blobs.read(found.sha256, CHUNK_BYTES)
    first = True
    while (chunk := await asyncio.to_thread(next, chunks, None)) is not None or first:
        response = design_pb2.DownloadRevisionResponse(chunk=chunk or b"")
        if first:
            response.media_type = found.media_type
            response.size_bytes = found.size_bytes
            response.sha256 = found.sha256
            first = False
        yield response
        if chunk is None:
            break
