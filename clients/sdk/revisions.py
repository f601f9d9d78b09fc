"""Revision helpers: push a file as a client-streaming upload, download to a file, wait."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from clients.sdk.client import Cofab
from cofab.design.v1 import design_pb2

CHUNK_BYTES = 1 << 20
FORMATS_BY_SUFFIX = {
    ".step": "step",
    ".stp": "step",
    ".stl": "stl",
    ".obj": "obj",
    ".3mf": "3mf",
    ".gltf": "gltf",
    ".glb": "glb",
    ".ply": "ply",
    ".off": "off",
    ".py": "cadquery",
}
FINISHED = (design_pb2.Revision.STATE_SUCCEEDED, design_pb2.Revision.STATE_FAILED)
# Told (bytes so far, bytes in all) after each chunk of an upload or a download.
Progress = Callable[[int, int], None]


def format_of(path: Path) -> str:
    """The revision format a file name suggests ("" when the suffix says nothing)."""
    return FORMATS_BY_SUFFIX.get(path.suffix.lower(), "")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def parameter(value: float | int | str | bool) -> design_pb2.ParameterValue:
    if isinstance(value, bool):
        return design_pb2.ParameterValue(bool_value=value)
    if isinstance(value, int):
        return design_pb2.ParameterValue(int_value=value)
    if isinstance(value, float):
        return design_pb2.ParameterValue(number_value=value)
    return design_pb2.ParameterValue(string_value=value)


def push_requests(
    header: design_pb2.PushRevisionHeader,
    path: Path,
    chunk_bytes: int = CHUNK_BYTES,
    progress: Progress | None = None,
) -> Iterator[design_pb2.PushRevisionRequest]:
    """The header, then the file in chunks."""
    yield design_pb2.PushRevisionRequest(header=header)
    sent = 0
    with path.open("rb") as source:
        while chunk := source.read(chunk_bytes):
            yield design_pb2.PushRevisionRequest(chunk=chunk)
            sent += len(chunk)
            if progress is not None:
                progress(sent, header.size_bytes)


def push_revision(
    cofab: Cofab,
    design: str,
    path: Path,
    *,
    base_revision: str = "",
    branch: str = "",
    message: str = "",
    format: str = "",
    units: str = "",
    parameters: Mapping[str, float | int | str | bool] | None = None,
    request_id: str = "",
    chunk_bytes: int = CHUNK_BYTES,
    timeout: float | None = None,
    progress: Progress | None = None,
) -> design_pb2.Revision:
    """Pushes a file as a new revision of `design` (projects/{p}/designs/{d}); returns it
    PENDING. The format defaults to the one the file's suffix names."""
    path = Path(path)
    header = design_pb2.PushRevisionHeader(
        parent=design,
        branch=branch,
        base_revision=base_revision,
        message=message,
        format=format or format_of(path),
        units=units,
        sha256=file_sha256(path),
        size_bytes=os.path.getsize(path),
        parameters={k: parameter(v) for k, v in (parameters or {}).items()},
        request_id=request_id,
    )
    revision: design_pb2.Revision = cofab.designs.PushRevision(
        push_requests(header, path, chunk_bytes, progress), timeout=timeout
    )
    return revision


def download(
    cofab: Cofab,
    revision: str,
    destination: Path,
    artifact: str = "",
    timeout: float | None = None,
    progress: Progress | None = None,
) -> design_pb2.DownloadRevisionResponse:
    """Writes a revision's content (or a named artifact) to `destination`, checking its sha256;
    returns the first response (media type, size, sha256). Nothing is left on a failure."""
    return _write(
        cofab.designs.DownloadRevision(
            design_pb2.DownloadRevisionRequest(name=revision, artifact=artifact), timeout=timeout
        ),
        Path(destination),
        f"{revision} {artifact}",
        progress,
    )


def download_diff(
    cofab: Cofab, diff: str, destination: Path, artifact: str, timeout: float | None = None
) -> design_pb2.DownloadRevisionResponse:
    """Writes a diff's picture ("diff.png") or coloured model ("diff.glb") to `destination`,
    as `download` does."""
    return _write(
        cofab.designs.DownloadRevisionDiff(
            design_pb2.DownloadRevisionDiffRequest(name=diff, artifact=artifact), timeout=timeout
        ),
        Path(destination),
        f"{diff} {artifact}",
    )


def _write(
    responses: Iterable[design_pb2.DownloadRevisionResponse],
    destination: Path,
    what: str,
    progress: Progress | None = None,
) -> design_pb2.DownloadRevisionResponse:
    partial = destination.with_name(destination.name + ".part")
    first: design_pb2.DownloadRevisionResponse | None = None
    digest = hashlib.sha256()
    try:
        with partial.open("wb") as sink:
            for response in responses:
                if first is None:
                    first = response
                sink.write(response.chunk)
                digest.update(response.chunk)
                if progress is not None:
                    progress(sink.tell(), first.size_bytes)
        if first is None or digest.hexdigest() != first.sha256:
            raise OSError(f"the download of {what} was incomplete or corrupted")
        partial.replace(destination)
    finally:
        partial.unlink(missing_ok=True)
    return first


def wait_for(cofab: Cofab, revision: str, timeout: float | None = None) -> design_pb2.Revision:
    """Watches a revision until it SUCCEEDED or FAILED; returns it then."""
    last = None
    for last in cofab.designs.WatchRevision(
        design_pb2.WatchRevisionRequest(name=revision), timeout=timeout
    ):
        if last.state in FINISHED:
            return last
    if last is None:
        raise RuntimeError(f"the watch of {revision} ended without a state")
    return last


DIFF_FINISHED = (design_pb2.RevisionDiff.STATE_SUCCEEDED, design_pb2.RevisionDiff.STATE_FAILED)
MERGE_WORKING = (design_pb2.RevisionMerge.STATE_PENDING, design_pb2.RevisionMerge.STATE_RUNNING)


def wait_for_diff(
    cofab: Cofab,
    diff: str,
    timeout: float | None = None,
    on_state: Callable[[design_pb2.RevisionDiff.State.ValueType], None] | None = None,
) -> design_pb2.RevisionDiff:
    """Watches a diff until it SUCCEEDED or FAILED; returns it then. `on_state` is told each
    state the diff is seen in."""
    last = None
    for last in cofab.designs.WatchRevisionDiff(
        design_pb2.WatchRevisionDiffRequest(name=diff), timeout=timeout
    ):
        if on_state is not None:
            on_state(last.state)
        if last.state in DIFF_FINISHED:
            return last
    if last is None:
        raise RuntimeError(f"the watch of {diff} ended without a state")
    return last


def wait_for_merge(
    cofab: Cofab,
    merge: str,
    timeout: float | None = None,
    on_state: Callable[[design_pb2.RevisionMerge.State.ValueType], None] | None = None,
) -> design_pb2.RevisionMerge:
    """Watches a merge until the engine is done with it (PROPOSED, CONFLICTED or FAILED)."""
    last = None
    for last in cofab.designs.WatchRevisionMerge(
        design_pb2.WatchRevisionMergeRequest(name=merge), timeout=timeout
    ):
        if on_state is not None:
            on_state(last.state)
        if last.state not in MERGE_WORKING:
            return last
    if last is None:
        raise RuntimeError(f"the watch of {merge} ended without a state")
    return last
