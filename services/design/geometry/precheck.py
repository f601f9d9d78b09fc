"""The fast structural check run at push time, before a revision exists.

Bounded work only: the first and last few KiB, the file size, a binary header, a zip's central
directory, a script's syntax tree. Content that passes may still fail the full ingest later.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

from services.design.geometry.scripts import MAX_SCRIPT_BYTES, script_parameters
from services.design.geometry.types import FORMATS, Failure, IngestError

_HEAD = 4096
_TAIL = 4096
# Archive limits (3MF is the one archive format): the member count, the total inflated size,
# and the compression ratio of the whole archive and of each member over 64 KiB. Real meshes
# compress 3-10x; a 3MF is a model, a few relationship files and thumbnails or textures. The
# sandbox's memory limit bounds what an archive under these limits can still cost.
MAX_UNCOMPRESSED_BYTES = 512 * 1024**2
MAX_COMPRESSION_RATIO = 100.0
MAX_ZIP_MEMBERS = 1_000
_RATIO_MIN_MEMBER_BYTES = 64 * 1024
_MAGIC = (
    (b"PK\x03\x04", "a ZIP archive"),
    (b"PK\x05\x06", "a ZIP archive"),
    (b"glTF", "a binary glTF (GLB)"),
    (b"\x89PNG", "a PNG image"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"ISO-10303-21", "a STEP file"),
)
# Which of the magic-byte kinds each declared format may legitimately be.
_EXPECTED = {"3mf": "a ZIP archive", "glb": "a binary glTF (GLB)", "step": "a STEP file"}


def _invalid(reason: str) -> IngestError:
    return IngestError(Failure.INVALID, reason)


def _strip_comments(text: bytes) -> bytes:
    """Leading whitespace and /* ... */ comments removed (ISO 10303-21 allows comments
    anywhere whitespace may be, before the ISO-10303-21 keyword too)."""
    text = text.lstrip()
    while text.startswith(b"/*"):
        end = text.find(b"*/", 2)
        if end < 0:
            return b""
        text = text[end + 2 :].lstrip()
    return text


def _sniff(head: bytes) -> str | None:
    stripped = _strip_comments(head.removeprefix(b"\xef\xbb\xbf"))
    for magic, kind in _MAGIC:
        if head.startswith(magic) or (magic == b"ISO-10303-21" and stripped.startswith(magic)):
            return kind
    return None


def check_upload(path: Path, format: str) -> None:
    """Raises IngestError when the file at `path` visibly cannot be a `format` file."""
    if format not in FORMATS:
        raise _invalid(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    size = path.stat().st_size
    if size == 0:
        raise _invalid("the file is empty (0 bytes)")
    with path.open("rb") as f:
        head = f.read(_HEAD)
        f.seek(max(0, size - _TAIL))
        tail = f.read(_TAIL)
    kind = _sniff(head)
    expected = _EXPECTED.get(format)
    if kind is not None and kind != expected:
        raise _invalid(f"the file was declared {format.upper()} but is {kind}")
    if expected is not None and kind != expected:
        raise _invalid(f"the file was declared {format.upper()} but is not {expected}")
    if format == "step":
        _check_step(head, tail)
    elif format == "stl":
        _check_stl(path, size, head, tail)
    elif format == "glb":
        _check_glb(size, head)
    elif format == "3mf":
        _check_3mf(path)
    elif format in ("obj", "gltf", "off"):
        _check_text(format, head)
    elif format == "ply":
        _check_ply(head)
    elif format == "cadquery":
        _check_script(path, size)


def _check_step(head: bytes, tail: bytes) -> None:
    if b"HEADER;" not in head:
        raise _invalid("the STEP file has no HEADER section after ISO-10303-21")
    if b"END-ISO-10303-21" not in tail:
        raise _invalid("the STEP file is truncated: it does not end with END-ISO-10303-21;")


def _check_stl(path: Path, size: int, head: bytes, tail: bytes) -> None:
    if size >= 84:
        (count,) = struct.unpack_from("<I", head, 80)
        if size == 84 + 50 * count:
            if count == 0:
                raise IngestError(Failure.PRECONDITION, "the STL file has no triangles")
            return
    # Binary STL headers may begin with "solid" too; only a size mismatch with text that reads
    # as ASCII STL is taken as ASCII.
    if head.lstrip().lower().startswith(b"solid") and b"\x00" not in head:
        if b"endsolid" not in tail.lower():
            raise _invalid("the ASCII STL file is truncated: it has no 'endsolid' line")
        if b"facet" not in head.lower() and b"facet" not in tail.lower():
            raise IngestError(Failure.PRECONDITION, "the STL file has no triangles")
        return
    if size < 84:
        raise _invalid(f"the binary STL file is {size} bytes, shorter than its 84-byte header")
    (count,) = struct.unpack_from("<I", head, 80)
    raise _invalid(
        f"the binary STL file declares {count} triangles ({84 + 50 * count} bytes) "
        f"but is {size} bytes"
    )


def _check_glb(size: int, head: bytes) -> None:
    if len(head) < 20:
        raise _invalid("the GLB file is shorter than its 20-byte header")
    _magic, version, length = struct.unpack_from("<4sII", head, 0)
    if version != 2:
        raise _invalid(f"the GLB file is glTF version {version}; only version 2 is supported")
    if length != size:
        raise _invalid(f"the GLB header declares {length} bytes but the file is {size} bytes")
    chunk_length, chunk_type = struct.unpack_from("<I4s", head, 12)
    if chunk_type != b"JSON" or 20 + chunk_length > size:
        raise _invalid("the GLB file does not start with a valid JSON chunk")


def _check_3mf(path: Path) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise _invalid(f"the 3MF file is not a readable ZIP archive: {exc}") from None
    if len(members) > MAX_ZIP_MEMBERS:
        raise IngestError(
            Failure.TOO_LARGE,
            f"the 3MF archive has {len(members)} members, over the limit of {MAX_ZIP_MEMBERS}",
        )
    total = sum(m.file_size for m in members)
    if total > MAX_UNCOMPRESSED_BYTES:
        raise IngestError(
            Failure.TOO_LARGE,
            f"the 3MF archive expands to {_mib(total)}, over the limit of "
            f"{_mib(MAX_UNCOMPRESSED_BYTES)} (a zip bomb?)",
        )
    compressed = sum(m.compress_size for m in members)
    if total > _RATIO_MIN_MEMBER_BYTES and total / max(compressed, 1) > MAX_COMPRESSION_RATIO:
        raise IngestError(
            Failure.TOO_LARGE,
            f"the 3MF archive expands {total / max(compressed, 1):.0f}x, over the limit of "
            f"{MAX_COMPRESSION_RATIO:.0f}x (a zip bomb?)",
        )
    for m in members:
        ratio = m.file_size / max(m.compress_size, 1)
        if m.file_size > _RATIO_MIN_MEMBER_BYTES and ratio > MAX_COMPRESSION_RATIO:
            raise IngestError(
                Failure.TOO_LARGE,
                f"the 3MF member {_excerpt(m.filename)!r} expands {ratio:.0f}x, over the limit "
                f"of {MAX_COMPRESSION_RATIO:.0f}x (a zip bomb?)",
            )
    if not any(m.filename.lower().endswith(".model") for m in members):
        raise _invalid("the 3MF archive contains no 3D model part (3D/3dmodel.model)")


def _mib(n: int) -> str:
    return f"{n / 1024**2:,.0f} MiB"


def _excerpt(name: str) -> str:
    return name if len(name) <= 80 else name[:79] + "…"


def _check_text(format: str, head: bytes) -> None:
    if b"\x00" in head:
        raise _invalid(f"the file was declared {format.upper()} but is binary")
    if format == "gltf" and not head.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"{"):
        raise _invalid("the glTF file is not a JSON document")


def _check_ply(head: bytes) -> None:
    # PLY starts with the line "ply", then "format ascii|binary_little_endian|binary_big_endian".
    lines = head.removeprefix(b"\xef\xbb\xbf").split(b"\n", 2)
    if lines[0].strip() != b"ply":
        raise _invalid("the file was declared PLY but does not start with the line 'ply'")
    if len(lines) < 2 or not lines[1].strip().startswith(b"format "):
        raise _invalid("the PLY file has no 'format' line after 'ply'")


def _check_script(path: Path, size: int) -> None:
    if size > MAX_SCRIPT_BYTES:
        raise IngestError(Failure.TOO_LARGE, f"the script is over {MAX_SCRIPT_BYTES} bytes")
    try:
        source = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid("the script is not UTF-8 text") from None
    script_parameters(source)
