"""The geometry engine of the design service: ingest, checks, rule sets, sandboxed scripts.

Plain Python over CadQuery/OpenCascade and trimesh; the service calls it in worker processes.
"""

from typing import TYPE_CHECKING

# `diff` and `merge` are imported eagerly although the engine is heavy: the module `diff` has the
# function's name, and only a binding made here, after the submodule import, keeps the package
# attribute the function for every later import. The module itself imports OpenCascade, trimesh
# and manifold3d only when called, so the service process stays light.
from services.design.geometry.diff import diff, merge
from services.design.geometry.precheck import check_upload
from services.design.geometry.ruleset import materials, rule_sets
from services.design.geometry.sandbox import SandboxLimits, bwrap_path
from services.design.geometry.scripts import resolve_parameters, script_parameters
from services.design.geometry.types import (
    FORMATS,
    UNITS_MM,
    Conflict,
    DiffInput,
    DiffResult,
    FaceChange,
    FaceSignature,
    Failure,
    Finding,
    IngestError,
    IngestRequest,
    IngestResult,
    Location,
    Material,
    MergeResult,
    ParameterDelta,
    ParameterSpec,
    ParameterValue,
    Properties,
    Region,
    Rule,
    RuleSet,
    Severity,
)

__all__ = [
    "FORMATS",
    "UNITS_MM",
    "Conflict",
    "DiffInput",
    "DiffResult",
    "FaceChange",
    "FaceSignature",
    "Failure",
    "Finding",
    "IngestError",
    "IngestRequest",
    "IngestResult",
    "Location",
    "Material",
    "MergeResult",
    "ParameterDelta",
    "ParameterSpec",
    "ParameterValue",
    "Properties",
    "Region",
    "Rule",
    "RuleSet",
    "SandboxLimits",
    "Severity",
    "bwrap_path",
    "check_upload",
    "diff",
    "ingest",
    "materials",
    "merge",
    "resolve_parameters",
    "rule_sets",
    "script_parameters",
]

if TYPE_CHECKING:
    from services.design.geometry.engine import ingest


def __getattr__(name: str) -> object:
    # `ingest` pulls in OpenCascade and trimesh, seconds of imports. The service process needs
    # only the contract and the fast checks; the engine loads where it runs, in the workers.
    if name == "ingest":
        from services.design.geometry.engine import ingest

        return ingest
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
