"""Content-addressed blobs on the local filesystem: `<root>/ab/cd/<sha256>`.

Bytes go to a temporary file under `<root>/.tmp` (the same filesystem as their final place),
are fsynced, and are renamed into place atomically, so a blob path either does not exist or
holds all of its bytes. A crashed or cancelled upload leaves at most a temporary file, which
`abort` removes and `sweep_temporary` clears at start-up.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
TMP_DIR = ".tmp"


def check_sha256(value: str) -> str:
    if not _SHA256_RE.match(value):
        raise ValueError(f"{value!r} is not a lowercase hex sha256")
    return value


class FileBlobUpload:
    """One upload in progress (see services.design.domain.ports.BlobUpload)."""

    def __init__(self, store: FileBlobStore) -> None:
        self._store = store
        fd, name = tempfile.mkstemp(dir=store.tmp_dir, prefix="upload-")
        self._file = os.fdopen(fd, "wb")
        self._path = Path(name)
        self._hash = hashlib.sha256()
        self._size = 0
        self._done = False

    @property
    def size(self) -> int:
        return self._size

    @property
    def staged_path(self) -> Path:
        self._file.flush()
        return self._path

    def write(self, data: bytes) -> None:
        if self._done:
            raise ValueError("upload already finished")
        self._file.write(data)
        self._hash.update(data)
        self._size += len(data)

    def sha256(self) -> str:
        return self._hash.hexdigest()

    def commit(self) -> str:
        if self._done:
            raise ValueError("upload already finished")
        digest = self.sha256()
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._store.place(self._path, digest)
        except BaseException:
            self.abort()
            raise
        self._done = True
        return digest

    def abort(self) -> None:
        self._done = True
        if not self._file.closed:
            self._file.close()
        self._path.unlink(missing_ok=True)


class FileBlobStore:
    """Blobs in a directory; safe for several threads and processes writing the same content."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp_dir = root / TMP_DIR
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def sweep_temporary(self) -> int:
        """Removes temporary files a crashed process left; call before serving uploads."""
        removed = 0
        for leftover in self.tmp_dir.iterdir():
            leftover.unlink(missing_ok=True)
            removed += 1
        return removed

    def path(self, sha256: str) -> Path:
        check_sha256(sha256)
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def begin(self) -> FileBlobUpload:
        return FileBlobUpload(self)

    def place(self, staged: Path, sha256: str) -> None:
        """Moves a complete, synced temporary file to its content address."""
        target = self.path(sha256)
        if target.exists():
            # Same bytes stored once: the copy already there is complete (it was renamed in).
            staged.unlink(missing_ok=True)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, target)
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a power loss
        finally:
            os.close(dir_fd)

    def put_file(self, path: Path) -> tuple[str, int]:
        upload = self.begin()
        try:
            with path.open("rb") as source:
                while chunk := source.read(1 << 20):
                    upload.write(chunk)
        except BaseException:
            upload.abort()
            raise
        size = upload.size
        return upload.commit(), size

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def size(self, sha256: str) -> int:
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError:
            raise KeyError(sha256) from None

    def read(self, sha256: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        try:
            source = self.path(sha256).open("rb")
        except FileNotFoundError:
            raise KeyError(sha256) from None
        with source:
            while chunk := source.read(chunk_size):
                yield chunk
