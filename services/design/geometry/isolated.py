"""The engine's entry points as the service calls them: each runs in the sandbox.

`ingest`, `diff` and `merge` of the engine parse the user's bytes (STEP, meshes, archives) with
large native libraries, so the service never calls them in a process of its own: these
functions hand the job to `sandbox.run_task` and rebuild the engine's result from the JSON and
the files the sandbox returns. A script is built in one sandbox and its STEP ingested in a
second, fresh one, so the script's code never runs where its part is measured and checked.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from services.design.geometry import codec
from services.design.geometry.sandbox import (
    FILE_LIMITS,
    SCRIPT_LIMITS,
    SandboxLimits,
    run_script,
    run_task,
)
from services.design.geometry.scripts import MAX_SCRIPT_BYTES, resolve_parameters, script_parameters
from services.design.geometry.types import (
    FORMATS,
    DiffInput,
    DiffResult,
    Failure,
    IngestError,
    IngestRequest,
    IngestResult,
    MergeResult,
)

INGEST_OUTPUTS = frozenset({"mesh.glb", "thumbnail.png", "report.json", "model.step"})
DIFF_OUTPUTS = frozenset({"diff.png", "diff.glb"})
MERGE_OUTPUTS = frozenset(
    {f"{side}/{name}" for side in ("ours", "theirs") for name in DIFF_OUTPUTS}
    | {"merged.step", "merged.stl", "merged.py"}
)
_EXTENSIONS = {
    "step": "step",
    "stl": "stl",
    "obj": "obj",
    "3mf": "3mf",
    "gltf": "gltf",
    "glb": "glb",
}
T = TypeVar("T")


def ingest(
    request: IngestRequest,
    limits: SandboxLimits = FILE_LIMITS,
    script_limits: SandboxLimits = SCRIPT_LIMITS,
) -> IngestResult:
    """The engine's ingest of `request`, run in the sandbox; artifacts land in work_dir."""
    job: dict[str, Any] = {
        "format": request.format,
        "units": request.units,
        "rule_set": request.rule_set,
        "parameters": codec.parameters_json(request.parameters),
        "rule_overrides": dict(request.rule_overrides),
        "material": request.material,
    }
    if request.format != "cadquery":
        if request.format not in FORMATS:
            raise IngestError(Failure.INVALID, f"unknown format {request.format!r}")
        name = f"source.{request.format}"
        value, files = run_task(
            "ingest", {**job, "source": name}, {name: request.source}, request.work_dir,
            INGEST_OUTPUTS, limits,
        )  # fmt: skip
        return _decode(lambda: codec.ingest_from_json(value, files))
    source = _script_source(request.source)
    values = resolve_parameters(script_parameters(source), request.parameters)
    with tempfile.TemporaryDirectory(prefix="cofab-script-") as tmp:
        built = Path(tmp) / "model.step"
        run_script(source, values, built, script_limits)
        value, files = run_task(
            "ingest-script", {**job, "parameters": codec.parameters_json(values)},
            {"model.step": built}, request.work_dir, INGEST_OUTPUTS, limits,
        )  # fmt: skip
    return _decode(lambda: codec.ingest_from_json(value, files))


def diff(
    a: DiffInput, b: DiffInput, work_dir: Path, limits: SandboxLimits = FILE_LIMITS
) -> DiffResult:
    """The engine's diff of two revisions, run in the sandbox; pictures land in work_dir."""
    job = {"a": codec.diff_input_to_json(a), "b": codec.diff_input_to_json(b)}
    inputs = _diff_inputs({"a": a, "b": b})
    value, files = run_task("diff", job, inputs, work_dir, DIFF_OUTPUTS, limits)

    def decoded() -> DiffResult:
        return dataclasses.replace(codec.diff_from_json(value), artifacts=files)

    return _decode(decoded)


def merge(
    base: DiffInput,
    ours: DiffInput,
    theirs: DiffInput,
    work_dir: Path,
    limits: SandboxLimits = FILE_LIMITS,
) -> MergeResult:
    """The engine's three-way merge, run in the sandbox; its files land in work_dir."""
    sides = {"base": base, "ours": ours, "theirs": theirs}
    job = {name: codec.diff_input_to_json(side) for name, side in sides.items()}
    value, files = run_task("merge", job, _diff_inputs(sides), work_dir, MERGE_OUTPUTS, limits)
    return _decode(lambda: codec.merge_from_json(value, files))


def _diff_inputs(sides: Mapping[str, DiffInput]) -> dict[str, Path]:
    inputs: dict[str, Path] = {}
    for name, side in sides.items():
        inputs[f"{name}/mesh.glb"] = side.mesh
        if side.step is not None:
            inputs[f"{name}/model.step"] = side.step
    return inputs


def _script_source(path: Path) -> str:
    with path.open("rb") as f:
        data = f.read(MAX_SCRIPT_BYTES + 1)
    if len(data) > MAX_SCRIPT_BYTES:
        raise IngestError(Failure.TOO_LARGE, f"the script is over {MAX_SCRIPT_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise IngestError(Failure.INVALID, "the script is not UTF-8 text") from None


def _decode(build: Callable[[], T]) -> T:
    # The sandbox's answer is untrusted: a malformed one is the job's failure, not a crash here.
    try:
        return build()
    except (KeyError, TypeError, ValueError, AttributeError):
        raise IngestError(Failure.INVALID, "the job returned an incomplete result") from None
