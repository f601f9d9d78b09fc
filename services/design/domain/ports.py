"""Ports of the design service: what its use cases need from the outside world."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol


class BlobUpload(Protocol):
    """Bytes being stored. Nothing is visible under a content address until `commit`; `abort`
    (or never committing) leaves nothing behind."""

    @property
    def size(self) -> int: ...

    @property
    def staged_path(self) -> Path:
        """The bytes written so far, for checks before committing (read them, do not move)."""
        ...

    def write(self, data: bytes) -> None: ...

    def sha256(self) -> str:
        """Hex sha256 of everything written."""
        ...

    def commit(self) -> str:
        """Makes the content readable under its sha256 (stored once) and returns the sha256."""
        ...

    def abort(self) -> None: ...


class BlobStore(Protocol):
    """Content-addressed storage of revision files and their artifacts."""

    def begin(self) -> BlobUpload: ...

    def put_file(self, path: Path) -> tuple[str, int]:
        """Stores a copy of a file; returns its (sha256, size)."""
        ...

    def exists(self, sha256: str) -> bool: ...

    def size(self, sha256: str) -> int: ...

    def read(self, sha256: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """The content in chunks; KeyError when no such blob exists."""
        ...

    def path(self, sha256: str) -> Path:
        """A local path of the content, for worker processes (filesystem stores only)."""
        ...


class RuleInfo(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def check(self) -> str: ...

    @property
    def severity(self) -> Any:
        """An enum whose value is "info", "warning" or "error"."""
        ...

    @property
    def description(self) -> str: ...

    @property
    def limit(self) -> float | None: ...

    @property
    def unit(self) -> str: ...

    @property
    def axis(self) -> str | None: ...


class MaterialInfo(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def display_name(self) -> str: ...

    @property
    def density_g_cm3(self) -> float: ...


class RuleSetInfo(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def display_name(self) -> str: ...

    @property
    def process(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def default_material(self) -> str: ...

    @property
    def rules(self) -> Sequence[RuleInfo]: ...


class GeometryChecks(Protocol):
    """The fast parts of the geometry engine the request path uses (the slow `ingest` runs in
    worker processes, see services.design.processing)."""

    def check_upload(self, path: Path, format: str) -> None:
        """Raises IngestError when the file cannot be what it claims."""
        ...

    def rule_sets(self) -> Mapping[str, RuleSetInfo]: ...

    def materials(self) -> Mapping[str, MaterialInfo]:
        """The material density table, by id."""
        ...

    def script_parameters(self, source: str) -> Mapping[str, Any]:
        """A script's declared parameters by name; IngestError if it declares them badly."""
        ...
