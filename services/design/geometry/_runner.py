"""Runs one job inside the sandbox (see sandbox.py); never imported by the service.

The parent starts this file under bwrap with a JSON job on stdin: {"task", "channel",
"cpu_seconds", "memory_bytes", "max_processes", "max_output_bytes", "max_open_files",
"enforce_imports", ...task fields}. The runner first drops to the sandbox's unprivileged uid
(when bwrap left it as root of its user namespace), limits itself with setrlimit, runs the task
and sends its files and then `result.json` ({"ok", "value"} or {"ok": false, "failure",
"reason"}) as frames on the pipe `channel`: 2-byte magic, 2-byte name length, 8-byte data
length (big-endian), name, data.

Tasks: "script" executes a user's CadQuery script (`source`, `parameters`) with an import
allow-list and without `open`, and returns `model.step`; "ingest", "ingest-script", "diff" and
"merge" call the geometry engine on the inputs bound under /sandbox/in. The Python-level
guards are a convenience: bwrap, the uid and the rlimits are the boundary.
"""

from __future__ import annotations

import builtins
import errno
import json
import os
import resource
import stat
import struct
import sys
import traceback
from pathlib import Path
from typing import Any

SANDBOX_UID = 65534
IN = Path("/sandbox/in")
OUT = Path("/sandbox/out")
FRAME_HEADER = struct.Struct(">2sHQ")
FRAME_MAGIC = b"CF"
MAX_JOB_BYTES = 64 * 1024**2
# Top-level modules user code may import; CadQuery's own dependencies load before the guard is
# installed, so they do not need to be listed.
ALLOWED_IMPORTS = frozenset({"cadquery", "math", "OCP", "typing", "__future__"})
# Builtins a design script has no use for and that would reach outside the script.
REMOVED_BUILTINS = (
    "open",
    "exec",
    "eval",
    "compile",
    "input",
    "breakpoint",
    "help",
    "exit",
    "quit",
)


class Refused(Exception):
    """The job ends with this failure kind ("invalid", "precondition", "too_large")."""

    def __init__(self, failure: str, reason: str) -> None:
        super().__init__(reason)
        self.failure = failure
        self.reason = reason


def _drop_privileges() -> None:
    # As root of the user namespace bwrap was given (see sandbox._user_namespace), become the
    # unprivileged uid for good before anything of the job is read.
    if os.getuid() == 0 or os.geteuid() == 0:
        os.setgroups([])
        os.setgid(SANDBOX_UID)
        os.setuid(SANDBOX_UID)
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:  # pragma: no cover - would mean the drop did not hold
        os._exit(70)
    if os.getuid() != SANDBOX_UID or os.getgroups() not in ([], [SANDBOX_UID]):
        os._exit(70)


def _vm_size_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def _limit(which: int, value: int, grace: int = 0) -> None:
    """Lowers a soft limit to `value` and the hard limit to value + grace (never raises them)."""
    _soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
        grace = min(grace, hard - value)
    resource.setrlimit(which, (value, value + grace))


def _mib(n: int) -> str:
    return f"{n / 1024**3:g} GiB" if n >= 1024**3 else f"{n / 1024**2:.0f} MiB"


class Channel:
    def __init__(self, fd: int) -> None:
        self._fd = fd

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def send(self, name: str, data: bytes) -> None:
        encoded = name.encode("ascii")
        self._write(FRAME_HEADER.pack(FRAME_MAGIC, len(encoded), len(data)) + encoded)
        self._write(data)

    def send_file(self, name: str, path: Path) -> None:
        encoded = name.encode("ascii")
        # A script may have left a link or a FIFO in the place of its output: refuse, do not
        # follow or wait (the parent would refuse an oversized or unexpected frame anyway).
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        try:
            status = os.fstat(fd)
            if not stat.S_ISREG(status.st_mode):
                raise Refused("invalid", f"the job's output {name} is not a regular file")
            size = status.st_size
            self._write(FRAME_HEADER.pack(FRAME_MAGIC, len(encoded), size) + encoded)
            while chunk := os.read(fd, 1 << 20):
                self._write(chunk)
        finally:
            os.close(fd)


# --- the script task ---


def _guarded_import(real_import: Any) -> Any:
    def guarded(
        name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0
    ) -> Any:
        # Relative imports and imports made by already-loaded library code (whose globals name
        # a module outside the script) pass; only the script's own imports are filtered.
        caller = (globals or {}).get("__name__", "")
        if caller == "__design__" and (level != 0 or name.split(".")[0] not in ALLOWED_IMPORTS):
            raise ImportError(
                f"import of '{name}' is not allowed in design scripts "
                f"(allowed: {', '.join(sorted(ALLOWED_IMPORTS - {'__future__', 'typing'}))})"
            )
        return real_import(name, globals, locals, fromlist, level)

    return guarded


def _forbidden_open(*_args: Any, **_kwargs: Any) -> Any:
    raise PermissionError("file access is not allowed in design scripts")


def _run_script(job: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Path]]:
    import cadquery as cq

    namespace: dict[str, Any] = {"__name__": "__design__", "__builtins__": builtins.__dict__}
    if job["enforce_imports"]:
        safe = dict(builtins.__dict__)
        for name in REMOVED_BUILTINS:
            safe.pop(name, None)
        safe["open"] = _forbidden_open
        safe["__import__"] = _guarded_import(builtins.__import__)
        namespace["__builtins__"] = safe
    code = compile(job["source"], "design.py", "exec")
    exec(code, namespace)
    build = namespace.get("build")
    if not callable(build):
        raise Refused("invalid", "the script failed: the script defines no build() function")
    result = build(**job["parameters"])
    shape = _to_shape(cq, result)
    if shape is None:
        raise Refused(
            "invalid",
            f"the script failed: build() returned {type(result).__name__}, not a cadquery "
            "Workplane or Shape with a solid",
        )
    cq.exporters.export(shape, str(OUT / "model.step"), exportType="STEP")
    return {}, {"model.step": OUT / "model.step"}


def _to_shape(cq: Any, result: Any) -> Any:
    if isinstance(result, cq.Workplane):
        solids = [v for v in result.vals() if isinstance(v, cq.Shape)]
        if not solids:
            return None
        return solids[0] if len(solids) == 1 else cq.Compound.makeCompound(solids)
    if isinstance(result, cq.Shape):
        return result
    return None


# --- the engine's tasks ---


def _engine_task(task: str, job: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Path]]:
    sys.path.insert(0, "/sandbox/app")
    from services.design.geometry import codec, diff, engine, merge, types

    def request(source: Path) -> Any:
        return types.IngestRequest(
            source=source,
            format=str(job["format"]),
            units=str(job["units"]),
            work_dir=OUT,
            rule_set=str(job["rule_set"]),
            parameters=codec.parameters_from_json(job["parameters"]),
            rule_overrides={str(k): v for k, v in job["rule_overrides"].items()},
            material=job["material"],
        )

    try:
        if task == "ingest":
            result = engine.ingest(request(IN / str(job["source"])))
            return codec.ingest_to_json(result), dict(result.artifacts)
        if task == "ingest-script":
            values = codec.parameters_from_json(job["parameters"])
            result = engine.ingest_script_model(
                request(IN / "model.step"), IN / "model.step", values
            )
            return codec.ingest_to_json(result), dict(result.artifacts)
        if task == "diff":
            a, b = (_diff_input(codec, job[side], side) for side in ("a", "b"))
            compared = diff(a, b, OUT)
            return codec.diff_to_json(compared), dict(compared.artifacts)
        if task == "merge":
            base, ours, theirs = (
                _diff_input(codec, job[side], side) for side in ("base", "ours", "theirs")
            )
            merged = merge(base, ours, theirs, OUT)
            files = {f"ours/{k}": p for k, p in merged.ours.artifacts.items()}
            files.update({f"theirs/{k}": p for k, p in merged.theirs.artifacts.items()})
            if merged.merged is not None:
                files[merged.merged.name] = merged.merged
            return codec.merge_to_json(merged), files
    except types.IngestError as exc:
        raise Refused(exc.failure.value, exc.reason) from None
    raise Refused("internal", f"unknown sandbox task {task!r}")


def _diff_input(codec: Any, value: dict[str, Any], side: str) -> Any:
    return codec.diff_input_from_json(value, IN / side / "mesh.glb", IN / side / "model.step")


# --- the job ---


def _refusal(exc: BaseException, job: dict[str, Any]) -> Refused:
    """What a job's exception means for its author."""
    what = "the script" if job["task"] == "script" else "processing the file"
    if isinstance(exc, Refused):
        return exc
    if isinstance(exc, OSError) and exc.errno == errno.ELOOP:
        name = os.path.basename(str(getattr(exc, "filename", "") or "output"))
        return Refused("invalid", f"the job's output {name} is a symbolic link, not a file")
    if isinstance(exc, MemoryError):
        return Refused(
            "too_large", f"{what} exceeded the memory limit of {_mib(job['memory_bytes'])}"
        )
    if isinstance(exc, RecursionError):
        return Refused(
            "invalid", f"{what} failed: RecursionError: maximum recursion depth exceeded"
        )
    if isinstance(exc, BlockingIOError) or (isinstance(exc, OSError) and exc.errno == errno.EAGAIN):
        return Refused(
            "too_large",
            f"{what} exceeded the process limit of {job['max_processes']} ({_describe(exc)})",
        )
    if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
        return Refused(
            "too_large",
            f"{what} wrote a file over the size limit of {_mib(job['max_output_bytes'])}",
        )
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        if _is_full("/tmp"):
            return Refused(
                "too_large", f"{what} filled its /tmp, limited to {_mib(job['tmp_bytes'])}"
            )
        return Refused(
            "too_large", f"{what} exceeded the output limit of {_mib(job['max_output_bytes'])}"
        )
    if job["task"] == "script":
        return Refused("invalid", f"the script failed: {_describe(exc)}")
    return Refused("internal", f"processing failed: {type(exc).__name__}")


def _is_full(mount: str) -> bool:
    status = os.statvfs(mount)
    return status.f_bavail * status.f_frsize < 1024**2


def _describe(exc: BaseException) -> str:
    # The innermost frame inside the script tells the author where it failed.
    line = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == "design.py":
            line = f" (design.py line {frame.lineno})"
    return f"{type(exc).__name__}: {exc}{line}"


def _preload(task: str, job: dict[str, Any]) -> None:
    """Imports what the task needs before the address-space cap: OpenCascade alone reserves
    much of it and takes seconds, so a mesh file's ingest goes without."""
    if task != "script":
        import trimesh  # noqa: F401
    if task != "ingest" or job.get("format") == "step":
        import cadquery  # noqa: F401


def main() -> int:
    _drop_privileges()
    job = json.loads(sys.stdin.buffer.read(MAX_JOB_BYTES))
    channel = Channel(int(job["channel"]))
    task = str(job["task"])
    # Imports first (under a generous CPU cap), so the budgets below are the job's own.
    _limit(resource.RLIMIT_CPU, 4 * int(job["cpu_seconds"]), grace=2)
    _limit(resource.RLIMIT_NPROC, int(job["max_processes"]))
    _limit(resource.RLIMIT_FSIZE, int(job["max_output_bytes"]))
    _preload(task, job)
    _limit(resource.RLIMIT_AS, _vm_size_bytes() + int(job["memory_bytes"]))
    _limit(resource.RLIMIT_NOFILE, int(job["max_open_files"]))
    # SIGXCPU at the soft limit ends the run; the hard limit (SIGKILL) is the backstop.
    used = resource.getrusage(resource.RUSAGE_SELF)
    _limit(resource.RLIMIT_CPU, int(used.ru_utime + used.ru_stime) + int(job["cpu_seconds"]), 2)
    try:
        if task == "script":
            value, files = _run_script(job)
        else:
            value, files = _engine_task(task, job)
        for name, path in sorted(files.items()):
            channel.send_file(name, path)
        outcome: dict[str, Any] = {"ok": True, "value": value}
    except BaseException as exc:  # noqa: BLE001 - every failure becomes the job's result
        refused = _refusal(exc, job)
        outcome = {"ok": False, "failure": refused.failure, "reason": refused.reason}
    channel.send("result.json", json.dumps(outcome).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
