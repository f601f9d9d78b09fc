"""The push-time structural check: bounded work, precise reasons."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import pytest

from services.design.geometry import Failure, IngestError, check_upload

DATA = Path(__file__).parents[2] / "data"
STEP_OK = (
    b"ISO-10303-21;\nHEADER;\nFILE_DESCRIPTION((''),'2;1');\nENDSEC;\n"
    b"DATA;\nENDSEC;\nEND-ISO-10303-21;\n"
)


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _rejects(path: Path, format: str, failure: Failure, *words: str) -> None:
    with pytest.raises(IngestError) as caught:
        check_upload(path, format)
    assert caught.value.failure is failure
    for word in words:
        assert word in caught.value.reason


@pytest.mark.parametrize("name", ["cube-mm.step", "cube-in.step", "rounded-cube.step"])
def test_real_step_files_pass(name: str) -> None:
    check_upload(DATA / name, "step")


@pytest.mark.parametrize("name", ["Cube-binary.stl", "Moon-binary.stl", "HalfDonut-ascii.stl"])
def test_real_stl_files_pass(name: str) -> None:
    check_upload(DATA / name, "stl")


def test_empty_file(tmp_path: Path) -> None:
    _rejects(_write(tmp_path, "a.step", b""), "step", Failure.INVALID, "empty")


def test_step_without_header(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.step", b"solid x\nendsolid x\n")
    _rejects(path, "step", Failure.INVALID, "not a STEP file")


def test_truncated_step(tmp_path: Path) -> None:
    data = (DATA / "cube-mm.step").read_bytes()
    path = _write(tmp_path, "a.step", data[: len(data) // 2])
    _rejects(path, "step", Failure.INVALID, "truncated", "END-ISO-10303-21")


def test_step_that_is_a_zip(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model.step", STEP_OK)
    path = _write(tmp_path, "a.step", buffer.getvalue())
    _rejects(path, "step", Failure.INVALID, "declared STEP", "ZIP archive")


def test_stl_that_is_a_glb(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.stl", b"glTF" + bytes(100))
    _rejects(path, "stl", Failure.INVALID, "declared STL", "GLB")


def test_binary_stl_with_wrong_size(tmp_path: Path) -> None:
    # A real file with one byte more than its 288 triangles take.
    _rejects(
        DATA / "HalfDonut-binary-trailing-byte.stl",
        "stl",
        Failure.INVALID,
        "288 triangles",
        "14485",
    )
    data = (DATA / "Cube-binary.stl").read_bytes()
    _rejects(_write(tmp_path, "t.stl", data[:-20]), "stl", Failure.INVALID, "12 triangles")


def test_truncated_ascii_stl(tmp_path: Path) -> None:
    data = (DATA / "HalfDonut-ascii.stl").read_bytes()
    path = _write(tmp_path, "a.stl", data[: len(data) // 2])
    _rejects(path, "stl", Failure.INVALID, "endsolid")


def test_glb_with_bad_header(tmp_path: Path) -> None:
    body = b'{"asset":{"version":"2.0"}}   '
    good = (
        struct.pack("<4sII", b"glTF", 2, 20 + len(body))
        + struct.pack("<I4s", len(body), b"JSON")
        + body
    )
    check_upload(_write(tmp_path, "ok.glb", good), "glb")
    wrong_length = struct.pack("<4sII", b"glTF", 2, 999) + good[12:]
    _rejects(_write(tmp_path, "a.glb", wrong_length), "glb", Failure.INVALID, "999 bytes")
    wrong_version = struct.pack("<4sII", b"glTF", 1, len(good)) + good[12:]
    _rejects(_write(tmp_path, "b.glb", wrong_version), "glb", Failure.INVALID, "version 1")
    _rejects(
        _write(tmp_path, "c.glb", b"GLTF" + good[4:]), "glb", Failure.INVALID, "not a binary glTF"
    )


def test_3mf_not_a_zip(tmp_path: Path) -> None:
    _rejects(_write(tmp_path, "a.3mf", b"<model/>"), "3mf", Failure.INVALID, "not a ZIP")
    corrupt = b"PK\x03\x04" + bytes(200)
    _rejects(_write(tmp_path, "b.3mf", corrupt), "3mf", Failure.INVALID, "not a readable ZIP")


def test_3mf_zip_bomb(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("3D/3dmodel.model", b"\0" * (32 * 1024**2))
    path = _write(tmp_path, "bomb.3mf", buffer.getvalue())
    assert path.stat().st_size < 100_000
    _rejects(path, "3mf", Failure.TOO_LARGE, "zip bomb")


def test_3mf_without_model(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", b"hello")
    _rejects(_write(tmp_path, "a.3mf", buffer.getvalue()), "3mf", Failure.INVALID, "3dmodel.model")


def test_scripts(tmp_path: Path) -> None:
    ok = (
        "import cadquery as cq\n\ndef build(w: float = 2.0) -> cq.Workplane:\n"
        "    return cq.Workplane().box(w, w, w)\n"
    )
    check_upload(_write(tmp_path, "ok.py", ok.encode()), "cadquery")
    _rejects(
        _write(tmp_path, "a.py", b"def build(:\n"), "cadquery", Failure.INVALID, "does not parse"
    )
    _rejects(
        _write(tmp_path, "b.py", b"def build(w=2.0):\n    pass\n"),
        "cadquery",
        Failure.INVALID,
        "'w'",
        "type annotation",
    )
    _rejects(_write(tmp_path, "c.py", b"\xff\xfe"), "cadquery", Failure.INVALID, "UTF-8")


def test_unknown_format(tmp_path: Path) -> None:
    _rejects(_write(tmp_path, "a.x", b"x"), "dwg", Failure.INVALID, "unknown format 'dwg'")


def test_obj_that_is_binary(tmp_path: Path) -> None:
    _rejects(_write(tmp_path, "a.obj", b"v 0 0 0\x00\x01"), "obj", Failure.INVALID, "binary")
