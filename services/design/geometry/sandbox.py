"""Runs untrusted CadQuery design scripts in a separate process under bubblewrap.

The boundary is the operating system: `bwrap` gives the script's process empty namespaces (no
network, its own PIDs, no view of the host's files except read-only Python and system libraries,
a private tmpfs), a cleared environment and death with its parent; inside, `_runner.py` caps
CPU time, address space, processes, file size and open files with setrlimit before it executes
the script with an import allow-list. The parent enforces the wall-clock limit and caps what the
child may print. Every failure becomes an `IngestError` with a reason meant for the script's
author.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from services.design.geometry.types import Failure, IngestError, ParameterValue

RUNNER = Path(__file__).with_name("_runner.py")
# Where the sandbox sees the runner and its output directory.
_SANDBOX_RUNNER = "/sandbox/runner.py"
_SANDBOX_OUT = "/sandbox/out"
# System directories Python and CadQuery's native libraries load from; bound read-only.
_SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/bin", "/etc/ld.so.cache", "/etc/alternatives")
_SIGNAL_REASONS = {
    signal.SIGXCPU: "the CPU time limit",
    signal.SIGKILL: "a resource limit (killed)",
    signal.SIGSEGV: "a crash (segmentation fault)",
}


@dataclass(frozen=True)
class SandboxLimits:
    """What one script run may use; the defaults suit a part built in a few seconds."""

    cpu_seconds: int = 30
    wall_seconds: float = 60.0
    memory_bytes: int = 2 * 1024**3
    max_processes: int = 32
    max_output_bytes: int = 64 * 1024**2
    max_open_files: int = 256
    # Off only in tests that exercise the OS-level limits behind the Python-level guard.
    enforce_imports: bool = True


def bwrap_path() -> str:
    """The bubblewrap binary, or an IngestError saying scripts cannot run without it."""
    found = shutil.which("bwrap")
    if found is None:
        raise IngestError(
            Failure.PRECONDITION,
            "CadQuery scripts cannot run here: the sandbox needs bubblewrap (`bwrap`), which "
            "is not installed (apt-get install bubblewrap)",
        )
    return found


def _python_roots() -> list[str]:
    roots = {sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable))}
    return sorted(r for r in roots if r and os.path.exists(r))


def _command(out_dir: Path) -> list[str]:
    cmd = [
        bwrap_path(),
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--setenv", "HOME", "/tmp",
        "--setenv", "PATH", "/usr/bin:/bin",
        "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
        # One thread per native pool: the rlimits count threads as processes.
        "--setenv", "OMP_NUM_THREADS", "1",
        "--setenv", "OPENBLAS_NUM_THREADS", "1",
        "--setenv", "MPLCONFIGDIR", "/tmp",
        "--proc", "/proc",
        "--dev", "/dev",
        "--tmpfs", "/tmp",
        "--chdir", "/tmp",
    ]  # fmt: skip
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):
            cmd += ["--symlink", os.readlink(path), path]
        elif os.path.exists(path):
            cmd += ["--ro-bind", path, path]
    for root in _python_roots():
        cmd += ["--ro-bind", root, root]
    cmd += [
        "--ro-bind", str(RUNNER), _SANDBOX_RUNNER,
        "--bind", str(out_dir), _SANDBOX_OUT,
        os.path.join(sys.prefix, "bin", "python"), "-I", _SANDBOX_RUNNER,
    ]  # fmt: skip
    return cmd


def run_script(
    source: str,
    parameters: Mapping[str, ParameterValue],
    step_path: Path,
    limits: SandboxLimits | None = None,
) -> None:
    """Executes `source`'s build(**parameters) in the sandbox and writes the solid to step_path.

    Raises IngestError: INVALID when the script fails or breaks a rule of the sandbox,
    TOO_LARGE when it exceeds a time, memory, process or output limit."""
    limits = limits or SandboxLimits()
    with tempfile.TemporaryDirectory(prefix="cofab-sandbox-") as tmp:
        out_dir = Path(tmp)
        job = {
            "source": source,
            "parameters": dict(parameters),
            "out_dir": _SANDBOX_OUT,
            **{k: v for k, v in asdict(limits).items() if k != "wall_seconds"},
        }
        output, returncode, verdict = _supervise(_command(out_dir), json.dumps(job), limits)
        if verdict:
            raise IngestError(Failure.TOO_LARGE, verdict)
        result_file = out_dir / "result.json"
        result = json.loads(result_file.read_text()) if result_file.exists() else None
        if result is None:
            raise IngestError(*_crash_reason(returncode, output, limits))
        if not result["ok"]:
            kind, error = result["kind"], result["error"]
            if kind == "memory":
                raise IngestError(
                    Failure.TOO_LARGE,
                    f"the script exceeded the memory limit of {_mib(limits.memory_bytes)}",
                )
            if kind == "processes":
                raise IngestError(
                    Failure.TOO_LARGE,
                    f"the script exceeded the process limit of {limits.max_processes} ({error})",
                )
            if kind == "output":
                raise IngestError(
                    Failure.TOO_LARGE,
                    f"the script's output exceeded {_mib(limits.max_output_bytes)}",
                )
            raise IngestError(Failure.INVALID, f"the script failed: {error}")
        produced = out_dir / "model.step"
        if not produced.exists() or produced.stat().st_size == 0:
            raise IngestError(Failure.INVALID, "the script produced no STEP output")
        shutil.move(str(produced), step_path)


def _mib(n: int) -> str:
    return f"{n / 1024**2:.0f} MiB"


def _supervise(cmd: list[str], job: str, limits: SandboxLimits) -> tuple[bytes, int, str]:
    """Runs the sandbox, feeding it the job; returns (captured output, return code, verdict),
    where a non-empty verdict names the limit the parent had to enforce by killing it."""
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(job.encode())
        proc.stdin.close()
    except BrokenPipeError:
        pass
    deadline = time.monotonic() + limits.wall_seconds
    kept = bytearray()
    seen = 0
    verdict = ""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                verdict = f"the script exceeded the wall-clock limit of {limits.wall_seconds:g} s"
                break
            if not sel.select(timeout=min(remaining, 1.0)):
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            seen += len(chunk)
            # Keep only the tail: the end of a traceback is what explains a crash.
            kept = (kept + chunk)[-16384:]
            if seen > limits.max_output_bytes:
                verdict = f"the script's output exceeded {_mib(limits.max_output_bytes)}"
                break
    if verdict:
        _kill(proc)
    try:
        returncode = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        _kill(proc)
        returncode = proc.wait()
        verdict = (
            verdict or f"the script exceeded the wall-clock limit of {limits.wall_seconds:g} s"
        )
    proc.stdout.close()
    return bytes(kept), returncode, verdict


def _kill(proc: subprocess.Popen[bytes]) -> None:
    # bwrap runs in its own session; killing the group takes the sandbox's PID namespace down.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _crash_reason(returncode: int, output: bytes, limits: SandboxLimits) -> tuple[Failure, str]:
    if returncode < 0 or returncode > 128:
        signum = -returncode if returncode < 0 else returncode - 128
        if signum == signal.SIGXCPU:
            return (
                Failure.TOO_LARGE,
                f"the script exceeded the CPU time limit of {limits.cpu_seconds} s",
            )
        what = _SIGNAL_REASONS.get(signal.Signals(signum), f"signal {signum}")
        return Failure.TOO_LARGE, f"the script was stopped by {what}"
    tail = output.decode(errors="replace").strip().splitlines()[-3:]
    detail = " | ".join(tail) if tail else f"exit status {returncode}"
    if "MemoryError" in detail or "std::bad_alloc" in detail:
        return (
            Failure.TOO_LARGE,
            f"the script exceeded the memory limit of {_mib(limits.memory_bytes)}",
        )
    return Failure.INVALID, f"the script's process failed: {detail}"
