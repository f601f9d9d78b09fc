"""Untrusted CadQuery scripts and files in the real sandbox (bwrap, an unprivileged uid, rlimits,
tmpfs caps): each attack ends as an IngestError with a clear reason, and the calling process
carries on unharmed. The attacks through the public API are in
tests/integration/test_sandbox_attacks.py."""

from __future__ import annotations

import math
import os
import socket
import threading
from pathlib import Path

import pytest

from services.design.geometry import (
    Failure,
    IngestError,
    IngestRequest,
    SandboxLimits,
    bwrap_path,
    ingest,
)
from services.design.geometry.sandbox import run_script

# Tight limits keep the failing runs short; CadQuery's import (seconds) is outside the CPU budget.
FAST = SandboxLimits(cpu_seconds=3, wall_seconds=40, memory_bytes=512 * 1024**2)
OPEN = SandboxLimits(
    cpu_seconds=3, wall_seconds=40, memory_bytes=512 * 1024**2, enforce_imports=False
)

PLATE = """
import cadquery as cq
import math

def build(width: float = 30.0, holes: int = 2, label: str = "x") -> cq.Workplane:
    plate = cq.Workplane().box(width, 20, 4)
    grid = plate.faces(">Z").workplane().rarray(width / (holes + 1), 1, holes, 1)
    return grid.hole(math.sqrt(16))
"""


def _fails(source: str, tmp_path: Path, limits: SandboxLimits = FAST) -> IngestError:
    with pytest.raises(IngestError) as caught:
        run_script(source, {}, tmp_path / "model.step", limits)
    assert not (tmp_path / "model.step").exists()
    return caught.value


def _children() -> set[int]:
    me = str(os.getpid())
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if stat.rsplit(")", 1)[1].split()[1] == me:
                found.add(int(entry.name))
    return found


@pytest.fixture(autouse=True)
def no_leftover_processes():
    before = _children()
    yield
    assert _children() - before == set()


def test_script_builds_a_part(tmp_path: Path) -> None:
    source = tmp_path / "plate.py"
    source.write_text(PLATE)
    work = tmp_path / "work"
    work.mkdir()
    result = ingest(
        IngestRequest(source, "cadquery", "mm", work, "cnc-milling", parameters={"holes": 3}),
        limits=FAST,
    )
    assert result.parameters == {"width": 30.0, "holes": 3, "label": "x"}
    assert result.properties.holes == 3
    assert result.properties.volume_mm3 == pytest.approx(
        30 * 20 * 4 - 3 * math.pi * 2 * 2 * 4, rel=1e-4
    )
    assert result.artifacts["model.step"].read_bytes().startswith(b"ISO-10303-21")


def test_script_units_are_converted(tmp_path: Path) -> None:
    source = tmp_path / "plate.py"
    source.write_text(PLATE)
    work = tmp_path / "work"
    work.mkdir()
    result = ingest(
        IngestRequest(source, "cadquery", "cm", work, "cnc-milling", parameters={"holes": 1}),
        limits=FAST,
    )
    expected_cm3 = 30 * 20 * 4 - math.pi * 2 * 2 * 4
    assert result.properties.volume_mm3 == pytest.approx(expected_cm3 * 1000, rel=1e-4)
    assert result.properties.bbox_max[0] - result.properties.bbox_min[0] == pytest.approx(300)


def test_wrong_parameter_type_is_refused_before_running(tmp_path: Path) -> None:
    source = tmp_path / "plate.py"
    source.write_text(PLATE)
    with pytest.raises(IngestError, match="'holes' is a int"):
        ingest(
            IngestRequest(
                source, "cadquery", "mm", tmp_path, "cnc-milling", parameters={"holes": 1.5}
            )
        )


@pytest.mark.parametrize("module", ["os", "subprocess", "socket", "importlib"])
def test_forbidden_imports(tmp_path: Path, module: str) -> None:
    error = _fails(f"import {module}\n\ndef build():\n    pass\n", tmp_path)
    assert error.failure is Failure.INVALID
    assert f"import of '{module}' is not allowed" in error.reason


def test_reading_etc_passwd(tmp_path: Path) -> None:
    source = "def build():\n    return open('/etc/passwd').read()\n"
    error = _fails(source, tmp_path)
    assert "file access is not allowed" in error.reason
    # Behind the Python guard the file does not exist at all in the sandbox.
    bypass = "import os\n\ndef build():\n    os.stat('/etc/passwd')\n"
    error = _fails(bypass, tmp_path, OPEN)
    assert error.failure is Failure.INVALID
    assert "FileNotFoundError" in error.reason and "/etc/passwd" in error.reason


def test_no_host_files_or_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("COFAB_SECRET", "hunter2")
    repository = Path(__file__).parents[3]
    host_paths = (repository / "README.md", repository / "services", Path.home() / ".bashrc")
    assert all(p.exists() for p in host_paths[:2])
    probe = (
        "import os\n\ndef build():\n"
        f"    seen = [p for p in {[str(p) for p in host_paths]!r} if os.path.exists(p)]\n"
        "    raise RuntimeError(f'env={sorted(os.environ)} seen={seen}')\n"
    )
    error = _fails(probe, tmp_path, OPEN)
    assert "COFAB_SECRET" not in error.reason
    assert "seen=[]" in error.reason


def test_no_network(tmp_path: Path) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    accepted: list[object] = []
    server.settimeout(30)
    thread = threading.Thread(target=lambda: accepted.append(_accept(server)), daemon=True)
    thread.start()
    source = (
        "import socket\n\ndef build():\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=5)\n"
    )
    error = _fails(source, tmp_path, OPEN)
    assert "ConnectionRefusedError" in error.reason or "OSError" in error.reason
    server.close()
    thread.join()
    assert accepted == [None]


def _accept(server: socket.socket) -> object:
    try:
        conn, _ = server.accept()
    except OSError:
        return None
    conn.close()
    return "connected"


def test_endless_loop(tmp_path: Path) -> None:
    error = _fails("def build():\n    while True:\n        pass\n", tmp_path)
    assert error.failure is Failure.TOO_LARGE
    assert "CPU time limit of 3 s" in error.reason


def test_sleeping_forever_hits_the_wall_clock(tmp_path: Path) -> None:
    limits = SandboxLimits(cpu_seconds=30, wall_seconds=12, enforce_imports=False)
    error = _fails("import time\n\ndef build():\n    time.sleep(1000)\n", tmp_path, limits)
    assert error.failure is Failure.TOO_LARGE
    assert "wall-clock limit of 12 s" in error.reason


def test_memory_bomb(tmp_path: Path) -> None:
    error = _fails("def build():\n    x = [0] * (4 * 1024**3)\n", tmp_path)
    assert error.failure is Failure.TOO_LARGE
    assert "memory limit of 512 MiB" in error.reason


def test_fork_bomb(tmp_path: Path) -> None:
    guarded = _fails("import os\n\ndef build():\n    while True:\n        os.fork()\n", tmp_path)
    assert "import of 'os' is not allowed" in guarded.reason
    # Behind the guard, RLIMIT_NPROC and the PID namespace contain it.
    bomb = "import os\n\ndef build():\n    while True:\n        os.fork()\n"
    error = _fails(bomb, tmp_path, OPEN)
    assert error.failure is Failure.TOO_LARGE
    assert "process limit" in error.reason or "limit" in error.reason


def test_huge_output(tmp_path: Path) -> None:
    limits = SandboxLimits(cpu_seconds=20, wall_seconds=40, max_output_bytes=1024**2)
    error = _fails("def build():\n    while True:\n        print('x' * 4096)\n", tmp_path, limits)
    assert error.failure is Failure.TOO_LARGE
    assert "output exceeded 1 MiB" in error.reason


def test_script_errors_are_reported_with_the_line(tmp_path: Path) -> None:
    error = _fails("def build():\n    return 1 / 0\n", tmp_path)
    assert error.failure is Failure.INVALID
    assert "ZeroDivisionError" in error.reason and "line 2" in error.reason
    error = _fails("def build():\n    return 42\n", tmp_path)
    assert "returned int" in error.reason


def test_missing_bwrap_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(IngestError) as caught:
        bwrap_path()
    assert "bubblewrap" in caught.value.reason and caught.value.failure is Failure.PRECONDITION


def test_caller_is_unaffected_and_can_run_again(tmp_path: Path) -> None:
    _fails("def build():\n    while True:\n        pass\n", tmp_path)
    out = tmp_path / "again.step"
    run_script(PLATE, {"width": 30.0, "holes": 1, "label": "x"}, out, FAST)
    assert out.stat().st_size > 0


def test_uploaded_files_are_parsed_in_the_sandbox_under_its_limits(tmp_path: Path) -> None:
    import trimesh

    from services.design.geometry import isolated

    # A 327,680-triangle sphere: parsed, welded and measured it needs far more than 16 MiB.
    source = tmp_path / "sphere.stl"
    trimesh.creation.icosphere(subdivisions=7, radius=20.0).export(str(source))
    work = tmp_path / "work"
    work.mkdir()
    request = IngestRequest(source, "stl", "mm", work, "sla-printing")
    tight = SandboxLimits(cpu_seconds=60, wall_seconds=120, memory_bytes=16 * 1024**2)
    with pytest.raises(IngestError) as caught:
        isolated.ingest(request, limits=tight)
    assert caught.value.failure is Failure.TOO_LARGE
    assert "processing the file exceeded the memory limit of 16 MiB" in caught.value.reason
    assert list(work.iterdir()) == []
    # With the default limits the same file is measured, in the sandbox too.
    result = isolated.ingest(request)
    assert result.properties.volume_mm3 == pytest.approx(4 / 3 * math.pi * 20**3, rel=1e-2)
    assert set(result.artifacts) == {"mesh.glb", "thumbnail.png", "report.json"}
    assert all(p.parent == work for p in result.artifacts.values())


def test_the_parent_accepts_only_expected_frames(tmp_path: Path) -> None:
    from services.design.geometry.sandbox import FRAME_HEADER, FRAME_MAGIC, _Receiver

    def frame(name: str, data: bytes) -> bytes:
        return FRAME_HEADER.pack(FRAME_MAGIC, len(name), len(data)) + name.encode() + data

    good = _Receiver(tmp_path, frozenset({"mesh.glb"}), 1024)
    stream = frame("mesh.glb", b"abc") + frame("result.json", b'{"ok": true}')
    for i in range(len(stream)):  # byte by byte: frames may arrive split anywhere
        good.feed(stream[i : i + 1])
    good.close()
    assert good.error == "" and good.result == b'{"ok": true}'
    assert good.files["mesh.glb"].read_bytes() == b"abc"

    for name, data in (("../../etc/passwd", b"x"), ("thumbnail.png", b"x")):
        bad = _Receiver(tmp_path / name.replace("/", "_"), frozenset({"mesh.glb"}), 1024)
        bad.feed(frame(name, data))
        assert bad.error and bad.files == {}
    twice = _Receiver(tmp_path / "twice", frozenset({"mesh.glb"}), 1024)
    (tmp_path / "twice").mkdir()
    twice.feed(frame("mesh.glb", b"a") + frame("mesh.glb", b"b"))
    assert twice.error
    huge = _Receiver(tmp_path / "huge", frozenset({"mesh.glb"}), 1024)
    huge.feed(FRAME_HEADER.pack(FRAME_MAGIC, 8, 10**12) + b"mesh.glb")
    assert huge.over_limit and huge.files == {}
    cut = _Receiver(tmp_path / "cut", frozenset({"mesh.glb"}), 1024)
    (tmp_path / "cut").mkdir()
    cut.feed(frame("mesh.glb", b"abcdef")[:-2])
    cut.close()
    assert cut.error and cut.result is None
