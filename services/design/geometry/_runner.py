"""Runs one CadQuery design script inside the sandbox (see sandbox.py); not imported by the service.

The parent starts this file as a script under bwrap with a JSON job on stdin:
{"source", "parameters", "cpu_seconds", "memory_bytes", "max_processes", "max_output_bytes",
"max_open_files", "enforce_imports", "out_dir"}. It limits itself with setrlimit, imports CadQuery
(before the guard, so CadQuery's own imports are unaffected), then executes the user's code with a
restricted `__import__` and without `open`, calls `build(**parameters)` and exports the result to
`<out_dir>/model.step`. The outcome goes to `<out_dir>/result.json` as {"ok": bool, "error": str,
"kind": str}. Python-level guards are a second line: bwrap and the rlimits are the boundary.
"""

from __future__ import annotations

import builtins
import json
import resource
import sys
import traceback
from pathlib import Path
from typing import Any

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


def _write_result(out_dir: Path, ok: bool, kind: str = "", error: str = "") -> None:
    (out_dir / "result.json").write_text(json.dumps({"ok": ok, "kind": kind, "error": error}))


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


def main() -> int:
    job = json.loads(sys.stdin.read())
    out_dir = Path(job["out_dir"])
    # A generous cap while CadQuery loads; the script's own budget is set once it has.
    _limit(resource.RLIMIT_CPU, 4 * int(job["cpu_seconds"]), grace=2)
    _limit(resource.RLIMIT_NPROC, int(job["max_processes"]))
    _limit(resource.RLIMIT_FSIZE, int(job["max_output_bytes"]))
    import cadquery as cq

    # The budget is what the script may allocate on top of the interpreter and CadQuery, whose
    # address space (mostly reserved, not resident) varies between builds.
    _limit(resource.RLIMIT_AS, _vm_size_bytes() + int(job["memory_bytes"]))
    _limit(resource.RLIMIT_NOFILE, int(job["max_open_files"]))
    # SIGXCPU at the soft limit ends the run; the hard limit (SIGKILL) is the backstop.
    used = resource.getrusage(resource.RUSAGE_SELF)
    _limit(resource.RLIMIT_CPU, int(used.ru_utime + used.ru_stime) + int(job["cpu_seconds"]), 2)

    namespace: dict[str, Any] = {"__name__": "__design__", "__builtins__": builtins.__dict__}
    if job["enforce_imports"]:
        safe = dict(builtins.__dict__)
        for name in REMOVED_BUILTINS:
            safe.pop(name, None)
        safe["open"] = _forbidden_open
        safe["__import__"] = _guarded_import(builtins.__import__)
        namespace["__builtins__"] = safe
    try:
        code = compile(job["source"], "design.py", "exec")
        exec(code, namespace)
        build = namespace.get("build")
        if not callable(build):
            _write_result(out_dir, False, "script", "the script defines no build() function")
            return 0
        result = build(**job["parameters"])
        shape = _to_shape(cq, result)
        if shape is None:
            _write_result(
                out_dir,
                False,
                "script",
                f"build() returned {type(result).__name__}, not a cadquery Workplane or Shape "
                "with a solid",
            )
            return 0
        cq.exporters.export(shape, str(out_dir / "model.step"), exportType="STEP")
    except MemoryError:
        _write_result(out_dir, False, "memory", "the script ran out of memory")
        return 0
    except RecursionError:
        _write_result(out_dir, False, "script", "RecursionError: maximum recursion depth exceeded")
        return 0
    except BaseException as exc:
        _write_result(out_dir, False, _kind_of(exc), _describe(exc))
        return 0
    _write_result(out_dir, True)
    return 0


def _to_shape(cq: Any, result: Any) -> Any:
    if isinstance(result, cq.Workplane):
        solids = [v for v in result.vals() if isinstance(v, cq.Shape)]
        if not solids:
            return None
        return solids[0] if len(solids) == 1 else cq.Compound.makeCompound(solids)
    if isinstance(result, cq.Shape):
        return result
    return None


def _kind_of(exc: BaseException) -> str:
    if isinstance(exc, BlockingIOError) or (
        isinstance(exc, OSError) and exc.errno == 11  # EAGAIN from fork under RLIMIT_NPROC
    ):
        return "processes"
    if isinstance(exc, OSError) and exc.errno == 27:  # EFBIG under RLIMIT_FSIZE
        return "output"
    return "script"


def _describe(exc: BaseException) -> str:
    # The innermost frame inside the script tells the author where it failed.
    line = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == "design.py":
            line = f" (design.py line {frame.lineno})"
    return f"{type(exc).__name__}: {exc}{line}"


if __name__ == "__main__":
    sys.exit(main())
