"""The boundary around untrusted CAD input: scripts run, and uploaded files are parsed, only here.

Every job (a CadQuery script, the ingest of an uploaded file, a diff, a merge) runs in a fresh
`bwrap` sandbox as an unprivileged uid: its own user, PID, network, IPC and UTS namespaces, no
network, a cleared environment, read-only binds of the Python installation, system libraries
and the engine's own code, its inputs bound read-only, and two size-capped tmpfs mounts (`/tmp`
and `/sandbox/out`) that are all it can write. Nothing of the host is writable and no host path
the sandbox could create is ever opened: the job returns its files as a bounded stream of frames
over a pipe (`_runner.py` writes them), which the parent writes into files of its own. Limits
sit where the kernel enforces them (rlimits of CPU, address space, processes of the sandbox's
uid, file size and open files; tmpfs sizes), plus the wall clock and the stream's size, which
the parent enforces. Every failure is an `IngestError` with one sentence for the user that
names the limit or the rule, without server paths. See README.md, "Threat model".
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from services.design.geometry.types import Failure, IngestError, ParameterValue

RUNNER = Path(__file__).with_name("_runner.py")
# The engine's own code, bound read-only for the jobs that parse files.
_PACKAGE = Path(__file__).parent
_APP_FILES = {
    _PACKAGE.parents[1] / "__init__.py": "/sandbox/app/services/__init__.py",
    _PACKAGE.parent / "__init__.py": "/sandbox/app/services/design/__init__.py",
    _PACKAGE: "/sandbox/app/services/design/geometry",
}
_SANDBOX_RUNNER = "/sandbox/runner.py"
_SANDBOX_VENV = "/sandbox/venv"
SANDBOX_IN = "/sandbox/in"
SANDBOX_OUT = "/sandbox/out"
# System directories Python and CadQuery's native libraries load from; bound read-only.
_SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/bin", "/etc/ld.so.cache", "/etc/alternatives")
# The uid (and gid) jobs run as, inside their user namespace and, when the service runs as
# root, on the host too: an unprivileged id that owns no host file.
SANDBOX_UID = 65534
_CLONE_NEWUSER = 0x10000000
# A child that enters a new user namespace and waits, so that root can give the namespace a
# map in which the sandbox's uid is an unprivileged host uid (see _user_namespace).
_HOLDER = (
    "import ctypes, os, sys\n"
    f"if ctypes.CDLL(None, use_errno=True).unshare({_CLONE_NEWUSER}) != 0: os._exit(3)\n"
    "os.write(1, b'u')\n"
    "sys.stdin.read()\n"
)
# Frames on the result pipe: magic, name length, data length, name, data (see _runner.py).
FRAME_HEADER = struct.Struct(">2sHQ")
FRAME_MAGIC = b"CF"
RESULT_NAME = "result.json"
_MAX_RESULT_BYTES = 16 * 1024**2
_MAX_REASON_CHARS = 400
_KEPT_OUTPUT = 16384
_SIGNAL_REASONS = {
    signal.SIGXCPU: "the CPU time limit",
    signal.SIGKILL: "a resource limit (killed)",
    signal.SIGSEGV: "a crash (segmentation fault)",
}


@dataclass(frozen=True)
class SandboxLimits:
    """What one job may use. The defaults suit a script that builds a part in a few seconds;
    FILE_LIMITS suit the ingest, diff or merge of large uploaded models."""

    cpu_seconds: int = 30
    wall_seconds: float = 60.0
    memory_bytes: int = 2 * 1024**3  # address space on top of the interpreter's own
    max_processes: int = 32  # processes and threads of the sandbox's uid
    max_output_bytes: int = 64 * 1024**2  # the files returned (size of /sandbox/out), and stdout
    tmp_bytes: int = 256 * 1024**2  # size of the sandbox's /tmp
    max_open_files: int = 256
    # Off only in tests that exercise the OS-level boundary behind the Python-level guard.
    enforce_imports: bool = True


SCRIPT_LIMITS = SandboxLimits()
FILE_LIMITS = SandboxLimits(
    cpu_seconds=1200,
    wall_seconds=600.0,
    memory_bytes=6 * 1024**3,
    max_output_bytes=1024**3,
)


class SandboxError(RuntimeError):
    """The sandbox could not run the job or broke its protocol (our failure, not the user's)."""


def bwrap_path() -> str:
    """The bubblewrap binary, or an IngestError saying scripts cannot run without it."""
    found = shutil.which("bwrap")
    if found is None:
        raise IngestError(
            Failure.PRECONDITION,
            "CAD files and scripts cannot be processed here: the sandbox needs bubblewrap "
            "(`bwrap`), which is not installed (apt-get install bubblewrap)",
        )
    return found


def run_task(
    task: str,
    job: Mapping[str, Any],
    inputs: Mapping[str, Path],
    out_dir: Path,
    outputs: frozenset[str],
    limits: SandboxLimits,
) -> tuple[Mapping[str, Any], dict[str, Path]]:
    """Runs `task` of _runner.py on `inputs` (name -> host file, seen at /sandbox/in/<name>).

    Returns the task's JSON value and the files it returned (name -> file the parent wrote
    into `out_dir`, an empty directory of the caller's); only names in `outputs` are accepted.
    Raises IngestError for the user's failures and limits, SandboxError for our own."""
    command_job = {
        "task": task,
        **job,
        **{k: v for k, v in asdict(limits).items() if k != "wall_seconds"},
    }
    with tempfile.TemporaryDirectory(prefix="cofab-sandbox-") as tmp:
        staged = _stage(inputs, Path(tmp))
        read_fd, write_fd = os.pipe()
        try:
            receiver = _Receiver(out_dir, outputs, limits.max_output_bytes)
            with _user_namespace() as userns_fd:
                command = _command(task, staged, limits, userns_fd)
                keep = (write_fd,) if userns_fd is None else (write_fd, userns_fd)
                proc = subprocess.Popen(
                    command,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    pass_fds=keep,
                    # Nothing of the service's environment reaches bwrap (it is the sandbox's
                    # PID 1, whose environment a process inside could otherwise read).
                    env={},
                    cwd="/",
                    start_new_session=True,
                )
            os.close(write_fd)
            write_fd = -1
            payload = json.dumps({**command_job, "channel": keep[0]})
            output, returncode, verdict = _supervise(proc, payload, read_fd, receiver, limits)
        finally:
            os.close(read_fd)
            if write_fd >= 0:
                os.close(write_fd)
    if verdict:
        raise IngestError(Failure.TOO_LARGE, verdict)
    if receiver.error:
        raise IngestError(Failure.INVALID, receiver.error)
    if receiver.result is None:
        failure, reason = _crash_reason(returncode, output, limits, task)
        raise IngestError(failure, reason)
    try:
        result = json.loads(receiver.result)
    except ValueError:
        raise IngestError(Failure.INVALID, "the job returned an unreadable result") from None
    if not isinstance(result, dict):
        raise IngestError(Failure.INVALID, "the job returned an unreadable result")
    if not result.get("ok"):
        failure_name = str(result.get("failure", "invalid"))
        reason = redact(str(result.get("reason", "")))
        if failure_name == "internal":
            raise SandboxError(reason)
        try:
            failure = Failure(failure_name)
        except ValueError:
            failure = Failure.INVALID
        raise IngestError(failure, reason)
    value = result.get("value", {})
    if not isinstance(value, dict):
        raise IngestError(Failure.INVALID, "the job returned an unreadable result")
    return value, receiver.files


def run_script(
    source: str,
    parameters: Mapping[str, ParameterValue],
    step_path: Path,
    limits: SandboxLimits | None = None,
) -> None:
    """Executes `source`'s build(**parameters) in the sandbox and writes the solid to step_path.

    Raises IngestError: INVALID when the script fails or breaks a rule of the sandbox,
    TOO_LARGE when it exceeds a time, memory, process or output limit."""
    with tempfile.TemporaryDirectory(prefix="cofab-script-") as tmp:
        out = Path(tmp)
        _, files = run_task(
            "script",
            {"source": source, "parameters": dict(parameters)},
            {},
            out,
            frozenset({"model.step"}),
            limits or SCRIPT_LIMITS,
        )
        produced = files.get("model.step")
        if produced is None or produced.stat().st_size == 0:
            raise IngestError(Failure.INVALID, "the script produced no STEP output")
        shutil.move(str(produced), step_path)


# --- the sandbox's command line ---


def _python_layout() -> tuple[list[tuple[str, str]], str]:
    """Read-only binds (host path, sandbox path) of the Python installation, and the
    interpreter's path inside. A virtual environment is seen at /sandbox/venv, so no server
    path of ours appears in what a job can print."""
    binds: list[tuple[str, str]] = []
    base = os.path.realpath(sys.base_prefix)
    binds.append((base, base))
    executable_dir = os.path.dirname(os.path.realpath(sys.executable))
    if not executable_dir.startswith(base + os.sep):
        binds.append((executable_dir, executable_dir))
    if os.path.realpath(sys.prefix) != base:
        binds.append((sys.prefix, _SANDBOX_VENV))
        return binds, f"{_SANDBOX_VENV}/bin/python"
    return binds, os.path.join(base, "bin", "python3")


def _command(
    task: str, inputs: Mapping[str, Path], limits: SandboxLimits, userns_fd: int | None
) -> list[str]:
    cmd = [bwrap_path()]
    if userns_fd is not None:
        # Root: a namespace made by _user_namespace, in which the runner drops to SANDBOX_UID.
        cmd += ["--userns", str(userns_fd)]
    else:
        cmd += ["--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID)]
    cmd += [
        "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--setenv", "HOME", "/tmp",
        "--setenv", "PATH", "/usr/bin:/bin",
        "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
        # One thread per native pool: the process limit counts threads.
        "--setenv", "OMP_NUM_THREADS", "1",
        "--setenv", "OPENBLAS_NUM_THREADS", "1",
        "--setenv", "NUMBA_NUM_THREADS", "1",
        "--setenv", "MPLCONFIGDIR", "/tmp",
        "--hostname", "sandbox",
        "--proc", "/proc",
        "--dev", "/dev",
        "--perms", "1777", "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp",
        "--perms", "0777", "--size", str(limits.max_output_bytes), "--tmpfs", SANDBOX_OUT,
    ]  # fmt: skip
    binds: list[tuple[str, str]] = []
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):
            cmd += ["--symlink", os.readlink(path), path]
        elif os.path.exists(path):
            binds.append((path, path))
    python_binds, python = _python_layout()
    binds += [*python_binds, (str(RUNNER), _SANDBOX_RUNNER)]
    if task != "script":
        binds += [(str(host), inside) for host, inside in _APP_FILES.items()]
    binds += [(str(host), f"{SANDBOX_IN}/{name}") for name, host in sorted(inputs.items())]
    # bwrap would give the directories it creates on the way the host's modes (/root: 0700),
    # which the unprivileged uid could not enter.
    parents = sorted({str(p) for _, inside in binds for p in Path(inside).parents} - {"/"})
    for parent in parents:
        cmd += ["--perms", "0755", "--dir", parent]
    for host, inside in binds:
        cmd += ["--ro-bind", host, inside]
    cmd += [
        "--chdir", "/tmp",
        python, "-I", _SANDBOX_RUNNER,
    ]  # fmt: skip
    return cmd


@contextmanager
def _user_namespace() -> Iterator[int | None]:
    """As root, a new user namespace in which the sandbox's uid is the unprivileged host uid
    SANDBOX_UID (bwrap's own --uid would map it to root, who is exempt from the process limit
    and owns the host's files); None when the service runs unprivileged, where bwrap's user
    namespace already maps to an unprivileged uid."""
    if os.geteuid() != 0:
        yield None
        return
    holder = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", _HOLDER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={},
        cwd="/",
    )
    assert holder.stdin is not None and holder.stdout is not None
    fd = -1
    try:
        if holder.stdout.read(1) != b"u":
            raise SandboxError("the sandbox cannot start: user namespaces are not available")
        # Inner root is the host's root only while bwrap sets up the mounts (it must read the
        # Python installation wherever it is); the runner then drops to SANDBOX_UID for good.
        mapping = f"0 0 1\n{SANDBOX_UID} {SANDBOX_UID} 1\n"
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{holder.pid}/{name}", "w") as f:
                f.write(mapping)
        fd = os.open(f"/proc/{holder.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        yield fd
    finally:
        holder.stdin.close()
        holder.stdout.close()
        holder.wait()
        if fd >= 0:
            os.close(fd)


def _stage(inputs: Mapping[str, Path], tmp: Path) -> dict[str, Path]:
    """The inputs as files the sandbox's uid may read: readable ones as they are, others (the
    blob store keeps its files private) copied into a private directory of the parent."""
    staged: dict[str, Path] = {}
    for name, path in inputs.items():
        if not re.fullmatch(r"[a-z0-9_\-]+(/[a-z0-9_\-]+)?\.[a-z0-9]+", name):
            raise ValueError(f"bad sandbox input name {name!r}")
        if os.stat(path).st_mode & 0o004:
            staged[name] = Path(os.path.abspath(path))
            continue
        copy = tmp / "in" / name
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, copy)
        copy.chmod(0o644)
        staged[name] = copy
    return staged


# --- supervising the job and receiving its files ---


class _Receiver:
    """Parses the frames of the result pipe as they arrive, writing each file into out_dir.

    The stream is untrusted: names must be expected, each at most once; the total is capped;
    the parent creates every file itself (O_EXCL | O_NOFOLLOW) in a directory of its own."""

    def __init__(self, out_dir: Path, outputs: frozenset[str], cap: int) -> None:
        self._out_dir = out_dir
        self._outputs = outputs
        self._cap = cap
        self._buffer = bytearray()
        self._received = 0
        self._name: str | None = None
        self._remaining = 0
        self._fd = -1
        self._result = bytearray()
        self.files: dict[str, Path] = {}
        self.result: bytes | None = None
        self.error = ""
        self.over_limit = False

    def feed(self, data: bytes) -> None:
        if self.error or self.over_limit:
            return
        self._received += len(data)
        if self._received > self._cap + _MAX_RESULT_BYTES:
            self.over_limit = True
            return
        self._buffer += data
        while self._buffer and not self.error:
            if self._name is None:
                if not self._start_frame():
                    return
            else:
                self._take()

    def _start_frame(self) -> bool:
        if len(self._buffer) < FRAME_HEADER.size:
            return False
        magic, name_length, size = FRAME_HEADER.unpack_from(self._buffer)
        if len(self._buffer) < FRAME_HEADER.size + name_length:
            return False
        raw = bytes(self._buffer[FRAME_HEADER.size : FRAME_HEADER.size + name_length])
        name = raw.decode("ascii", errors="replace")
        allowed = name in self._outputs or name == RESULT_NAME
        if magic != FRAME_MAGIC or not allowed or name in self.files or self.result is not None:
            self.error = "the job returned output the sandbox does not accept"
            return False
        limit = _MAX_RESULT_BYTES if name == RESULT_NAME else self._cap
        if size > limit:
            self.over_limit = True
            self.error = "the job's output is over the limit"
            return False
        del self._buffer[: FRAME_HEADER.size + name_length]
        self._name, self._remaining = name, size
        if name != RESULT_NAME:
            path = self._out_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            self._fd = os.open(path, flags, 0o600)
            self.files[name] = path
        if size == 0:
            self._end_frame()
        return True

    def _take(self) -> None:
        chunk = bytes(self._buffer[: self._remaining])
        del self._buffer[: len(chunk)]
        self._remaining -= len(chunk)
        if self._name == RESULT_NAME:
            self._result += chunk
        else:
            view = memoryview(chunk)
            while view:
                view = view[os.write(self._fd, view) :]
        if self._remaining == 0:
            self._end_frame()

    def _end_frame(self) -> None:
        if self._name == RESULT_NAME:
            self.result = bytes(self._result)
        elif self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._name = None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._name is not None and not self.error:
            self.error = "the job's output ended in the middle of a file"
            self.result = None


def _supervise(
    proc: subprocess.Popen[bytes],
    job: str,
    channel_fd: int,
    receiver: _Receiver,
    limits: SandboxLimits,
) -> tuple[bytes, int, str]:
    """Feeds the job, reads the job's printed output (its tail kept) and its result frames
    until both end, within the wall clock; returns (output tail, return code, verdict), where a
    non-empty verdict names the limit the parent enforced by killing the sandbox."""
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
    streams = {proc.stdout.fileno(): "output", channel_fd: "channel"}
    with selectors.DefaultSelector() as sel:
        for fd in streams:
            sel.register(fd, selectors.EVENT_READ)
        while streams:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                verdict = f"the job exceeded the wall-clock limit of {limits.wall_seconds:g} s"
                break
            for key, _ in sel.select(timeout=min(remaining, 1.0)):
                fd = int(key.fd)
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    sel.unregister(fd)
                    del streams[fd]
                    continue
                if streams[fd] == "channel":
                    receiver.feed(chunk)
                    continue
                seen += len(chunk)
                # Keep only the tail: the end of a traceback is what explains a crash.
                kept = (kept + chunk)[-_KEPT_OUTPUT:]
            if seen > limits.max_output_bytes:
                verdict = f"the job's printed output exceeded {_mib(limits.max_output_bytes)}"
            elif receiver.over_limit:
                verdict = (
                    f"the job's files exceeded the output limit of {_mib(limits.max_output_bytes)}"
                )
            if verdict:
                break
    receiver.close()
    if verdict:
        _kill(proc)
    try:
        returncode = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        _kill(proc)
        returncode = proc.wait()
        verdict = verdict or f"the job exceeded the wall-clock limit of {limits.wall_seconds:g} s"
    proc.stdout.close()
    return bytes(kept), returncode, verdict


def _kill(proc: subprocess.Popen[bytes]) -> None:
    # bwrap runs in its own session; killing the group takes the sandbox's PID namespace down.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _mib(n: int) -> str:
    return f"{n / 1024**3:g} GiB" if n >= 1024**3 else f"{n / 1024**2:.0f} MiB"


def _crash_reason(
    returncode: int, output: bytes, limits: SandboxLimits, task: str
) -> tuple[Failure, str]:
    what = "the script" if task == "script" else "processing the file"
    if returncode < 0 or returncode > 128:
        signum = -returncode if returncode < 0 else returncode - 128
        if signum == signal.SIGXCPU:
            return (
                Failure.TOO_LARGE,
                f"{what} exceeded the CPU time limit of {limits.cpu_seconds} s",
            )
        try:
            described = _SIGNAL_REASONS.get(signal.Signals(signum), f"signal {signum}")
        except ValueError:
            described = f"signal {signum}"
        return Failure.TOO_LARGE, f"{what} was stopped by {described}"
    text = output.decode(errors="replace")
    if "MemoryError" in text or "std::bad_alloc" in text:
        return Failure.TOO_LARGE, f"{what} exceeded the memory limit of {_mib(limits.memory_bytes)}"
    tail = [line.strip() for line in text.strip().splitlines()[-3:] if line.strip()]
    detail = redact(" | ".join(tail)) if tail else f"exit status {returncode}"
    return Failure.INVALID, f"{what} failed: {detail}"


# Paths of the sandbox's own layout, and of the host's Python installation, never reach a user:
# a message names files by their base name only (a bare "/tmp" names the sandbox's own /tmp).
_PATH = re.compile(r"/(?:sandbox|tmp|usr|root|home|work|opt|var|proc|srv|mnt)(?:/[^\s'\":,()]+)+")


def redact(reason: str) -> str:
    """A reason from inside the sandbox, without paths and at most a few hundred characters."""
    cleaned = _PATH.sub(lambda m: os.path.basename(m.group(0).rstrip("/")) or "<path>", reason)
    cleaned = " ".join(cleaned.split())
    if len(cleaned) > _MAX_REASON_CHARS:
        cleaned = cleaned[: _MAX_REASON_CHARS - 1] + "…"
    return cleaned
