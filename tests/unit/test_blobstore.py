"""The filesystem blob store: round trip, dedup, concurrent writers, interrupted writes."""

from __future__ import annotations

import hashlib
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.design.adapters.blobstore import FileBlobStore, check_sha256

contents = st.binary(min_size=0, max_size=3 * 4096)
chunkings = st.lists(st.integers(min_value=1, max_value=4096), min_size=1, max_size=8)


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def write_in_chunks(store: FileBlobStore, data: bytes, sizes: list[int]) -> str:
    upload = store.begin()
    offset, i = 0, 0
    while offset < len(data):
        step = sizes[i % len(sizes)]
        upload.write(data[offset : offset + step])
        offset, i = offset + step, i + 1
    return upload.commit()


@given(data=contents, sizes=chunkings)
def test_round_trip_in_any_chunking(data: bytes, sizes: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = FileBlobStore(Path(tmp))
        digest = write_in_chunks(store, data, sizes)
        assert digest == hashlib.sha256(data).hexdigest()
        assert b"".join(store.read(digest, chunk_size=1000)) == data
        assert store.size(digest) == len(data)
        assert store.path(digest).relative_to(Path(tmp)).parts[:2] == (digest[:2], digest[2:4])
        assert list((Path(tmp) / ".tmp").iterdir()) == []


@given(data=contents, copies=st.integers(min_value=2, max_value=4))
def test_same_bytes_are_stored_once(data: bytes, copies: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = FileBlobStore(Path(tmp))
        digests = {write_in_chunks(store, data, [512]) for _ in range(copies)}
        assert len(digests) == 1
        assert files_under(Path(tmp)) == [store.path(digests.pop())]


@given(data=st.binary(min_size=1, max_size=64 * 1024), writers=st.integers(2, 6))
def test_concurrent_puts_of_the_same_content(data: bytes, writers: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = FileBlobStore(Path(tmp))
        start = threading.Barrier(writers)
        results: list[str] = []
        errors: list[BaseException] = []

        def put() -> None:
            try:
                start.wait()
                results.append(write_in_chunks(store, data, [777]))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=put) for _ in range(writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(set(results)) == 1 and len(results) == writers
        assert files_under(Path(tmp)) == [store.path(results[0])]
        assert b"".join(store.read(results[0])) == data


@given(data=st.binary(min_size=1, max_size=8192), cut=st.integers(min_value=0, max_value=8192))
def test_interrupted_write_leaves_nothing(data: bytes, cut: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = FileBlobStore(Path(tmp))
        upload = store.begin()
        upload.write(data[: cut % len(data)])
        upload.abort()
        assert files_under(Path(tmp)) == []
        assert not store.exists(hashlib.sha256(data).hexdigest())


def test_a_crashed_process_temporary_file_is_swept(tmp_path: Path) -> None:
    FileBlobStore(tmp_path)
    # What a process killed mid-upload leaves: a temporary file, never a blob.
    (tmp_path / ".tmp" / "upload-crashed").write_bytes(b"half of a file")
    restarted = FileBlobStore(tmp_path)
    assert restarted.sweep_temporary() == 1
    assert files_under(tmp_path) == []


def test_missing_blob_and_bad_address(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    with pytest.raises(KeyError):
        list(store.read("0" * 64))
    with pytest.raises(ValueError, match="sha256"):
        check_sha256("../../etc/passwd")
    with pytest.raises(ValueError):
        store.path("ABC")


def test_put_file_copies(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    source = tmp_path / "mesh.glb"
    source.write_bytes(b"glTF" * 1000)
    digest, size = store.put_file(source)
    assert size == 4000 and digest == hashlib.sha256(source.read_bytes()).hexdigest()
    assert source.exists()
