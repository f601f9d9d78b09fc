"""`ingest`: one uploaded file in, a measured, checked, rendered revision out."""

from __future__ import annotations

import gc
import json
import shutil
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from services.design.geometry.checks import CHECK_FUNCTIONS, Context, edge_counts, holes_of
from services.design.geometry.loaders import (
    Model,
    exact_bounds,
    read_mesh,
    read_step,
    tessellate,
    volume_and_centre,
)
from services.design.geometry.render import render
from services.design.geometry.ruleset import materials, rule_sets
from services.design.geometry.sandbox import SandboxLimits, run_script
from services.design.geometry.scripts import resolve_parameters, script_parameters
from services.design.geometry.types import (
    FORMATS,
    UNITS_MM,
    Failure,
    Finding,
    IngestError,
    IngestRequest,
    IngestResult,
    ParameterValue,
    Properties,
    RuleSet,
)

# Below this volume (mm³, relative to the bounding box) a part is taken as having none.
_ZERO_VOLUME_RATIO = 1e-9


def _invalid(reason: str) -> IngestError:
    return IngestError(Failure.INVALID, reason)


def _resolve(request: IngestRequest) -> tuple[RuleSet, str, dict[str, float]]:
    if request.format not in FORMATS:
        raise _invalid(f"unknown format {request.format!r}; expected one of {', '.join(FORMATS)}")
    if request.units not in UNITS_MM:
        raise _invalid(f"unknown units {request.units!r}; expected one of {', '.join(UNITS_MM)}")
    rule_set = rule_sets().get(request.rule_set)
    if rule_set is None:
        raise _invalid(
            f"unknown rule set {request.rule_set!r}; expected one of {', '.join(rule_sets())}"
        )
    material = request.material or rule_set.default_material
    if material not in materials():
        raise _invalid(f"unknown material {material!r}; expected one of {', '.join(materials())}")
    known = {r.id for r in rule_set.rules}
    unknown = sorted(set(request.rule_overrides) - known)
    if unknown:
        raise _invalid(
            f"rule overrides name rules {', '.join(unknown)} that {rule_set.id} does not have"
        )
    effective = {r.id: r.limit for r in rule_set.rules if r.limit is not None}
    for rule_id, value in request.rule_overrides.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
            raise _invalid(f"the override of rule {rule_id} must be a number >= 0, not {value!r}")
        effective[rule_id] = float(value)
    return rule_set, material, effective


def ingest(request: IngestRequest, limits: SandboxLimits | None = None) -> IngestResult:
    """Loads, converts to mm, measures, checks and renders the request's file into work_dir.

    In process: the service calls it only inside the sandbox (services.design.geometry.isolated);
    a script's build() itself runs in a sandbox of its own (`limits`).
    Raises IngestError for input that cannot become a revision."""
    if request.format == "cadquery":
        _resolve(request)
        parameters, step_path = _run_script(request, limits)
        try:
            return ingest_script_model(request, step_path, parameters)
        finally:
            step_path.unlink(missing_ok=True)
    rule_set, material, effective = _resolve(request)
    scale = UNITS_MM[request.units]
    try:
        if request.format == "step":
            model = _brep_model(request.source)
        else:
            model = Model(read_mesh(request.source, request.format, scale))
        return _measured(request, model, rule_set, material, effective, {}, {})
    finally:
        # Worker processes run many ingests: drop OpenCascade and trimesh caches promptly.
        gc.collect()


def ingest_script_model(
    request: IngestRequest, step_path: Path, parameters: Mapping[str, ParameterValue]
) -> IngestResult:
    """Ingests the STEP a sandboxed run of the request's script produced: scaled from the
    declared units to mm, written to work_dir as the `model.step` artifact, then measured."""
    import cadquery as cq

    rule_set, material, effective = _resolve(request)
    scale = UNITS_MM[request.units]
    model_step = request.work_dir / "model.step"
    try:
        if scale != 1.0:
            # Script dimensions are in the declared units; the stored model is in mm.
            shape = read_step(step_path).scale(scale)
            cq.exporters.export(shape, str(model_step), exportType="STEP")
        else:
            shutil.copyfile(step_path, model_step)
        model = _brep_model(model_step)
        artifacts = {"model.step": model_step}
        return _measured(request, model, rule_set, material, effective, artifacts, parameters)
    finally:
        gc.collect()


def _measured(
    request: IngestRequest,
    model: Model,
    rule_set: RuleSet,
    material: str,
    effective: Mapping[str, float],
    artifacts: Mapping[str, Path],
    parameters: Mapping[str, ParameterValue],
) -> IngestResult:
    properties = _properties(model, material)
    findings = check_rules(model, rule_set, effective, properties.mass_g)
    written = dict(artifacts)
    written.update(_write_artifacts(request.work_dir, model, properties, findings, rule_set))
    return IngestResult(properties, findings, written, dict(parameters))


def check_rules(
    model: Model, rule_set: RuleSet, limits: Mapping[str, float], mass_g: float | None
) -> list[Finding]:
    """Every rule of the set applied to the model, with `limits` (rule id -> limit) in force."""
    context = Context(model, mass_g)
    findings: list[Finding] = []
    for rule in rule_set.rules:
        findings += CHECK_FUNCTIONS[rule.check](context, rule, limits.get(rule.id))
    return findings


def _run_script(
    request: IngestRequest, limits: SandboxLimits | None
) -> tuple[dict[str, ParameterValue], Path]:
    try:
        source = request.source.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid("the script is not UTF-8 text") from None
    values = resolve_parameters(script_parameters(source), request.parameters)
    step_path = request.work_dir / "script-output.step"
    run_script(source, values, step_path, limits)
    return values, step_path


def _brep_model(path: Path) -> Model:
    import cadquery as cq

    shape = read_step(path)
    solids = shape.Solids()
    if not solids:
        # Many exporters write a solid as a closed shell ("shell based surface model").
        shells = [s for s in shape.Shells() if _shell_closed(s)]
        if not shells:
            raise IngestError(
                Failure.PRECONDITION,
                f"the STEP file contains no solid and no closed shell ({len(shape.Faces())} "
                "loose faces): export the part as a closed solid",
            )
        solids = [cq.Solid.makeSolid(s) for s in shells]
        shape = solids[0] if len(solids) == 1 else cq.Compound.makeCompound(solids)
    if not all(_shells_closed(s) for s in solids):
        raise IngestError(Failure.PRECONDITION, "a solid in the STEP file has an open shell")
    mesh, owner = tessellate(shape)
    return Model(mesh, shape, owner)


def _shell_closed(shell: Any) -> bool:
    from OCP.BRep import BRep_Tool

    return bool(BRep_Tool.IsClosed_s(shell.wrapped))


def _shells_closed(solid: Any) -> bool:
    return all(_shell_closed(shell) for shell in solid.Shells())


def _properties(model: Model, material: str) -> Properties:
    mesh = model.mesh
    boundary, _, _ = edge_counts(mesh)
    if boundary:
        raise IngestError(
            Failure.PRECONDITION,
            f"the mesh is not closed: {boundary} boundary edges (holes in the surface); a "
            "revision must be a watertight solid",
        )
    box_volume = float(np.prod(np.maximum(mesh.extents, 0.0)))
    density = materials()[material].density_g_cm3
    if model.shape is not None:
        shape = model.shape
        volume, centre = volume_and_centre(shape)
        area = float(shape.Area())
        lo, hi = exact_bounds(shape)
    else:
        # trimesh divides by the volume for the centre of mass; a flat part is refused below.
        with np.errstate(divide="ignore", invalid="ignore"):
            volume, area = float(mesh.volume), float(mesh.area)
            m = mesh.center_mass if volume else mesh.centroid
        centre = (float(m[0]), float(m[1]), float(m[2]))
        (x0, y0, z0), (x1, y1, z1) = mesh.bounds
        lo, hi = (float(x0), float(y0), float(z0)), (float(x1), float(y1), float(z1))
    if abs(volume) <= _ZERO_VOLUME_RATIO * max(box_volume, 1e-30) or box_volume == 0.0:
        raise IngestError(Failure.PRECONDITION, "the part has zero volume")
    return Properties(
        volume_mm3=abs(volume),
        area_mm2=area,
        bbox_min=(float(lo[0]), float(lo[1]), float(lo[2])),
        bbox_max=(float(hi[0]), float(hi[1]), float(hi[2])),
        center_of_mass=(float(centre[0]), float(centre[1]), float(centre[2])),
        mass_g=abs(volume) / 1000.0 * density,
        material=material,
        triangles=int(len(mesh.faces)),
        is_brep=model.is_brep,
        solids=len(model.shape.Solids()) if model.shape is not None else None,
        faces=len(model.shape.Faces()) if model.shape is not None else None,
        edges=len(model.shape.Edges()) if model.shape is not None else None,
        holes=len(holes_of(model)) if model.shape is not None else None,
    )


def _write_artifacts(
    work_dir: Path,
    model: Model,
    properties: Properties,
    findings: list[Finding],
    rule_set: RuleSet,
) -> dict[str, Path]:
    mesh_path = work_dir / "mesh.glb"
    model.mesh.export(str(mesh_path), file_type="glb")
    thumbnail = work_dir / "thumbnail.png"
    # Open surfaces were refused; an inside-out one is drawn without culling.
    render(model.mesh.vertices, model.mesh.faces, thumbnail, closed=bool(model.mesh.volume > 0))
    report = work_dir / "report.json"
    report.write_text(json.dumps(_report(properties, findings, rule_set), indent=2))
    return {"mesh.glb": mesh_path, "thumbnail.png": thumbnail, "report.json": report}


def _report(
    properties: Properties, findings: list[Finding], rule_set: RuleSet
) -> Mapping[str, Any]:
    def finding(f: Finding) -> dict[str, Any]:
        data = asdict(f)
        data["severity"] = f.severity.value
        return data

    return {
        "rule_set": rule_set.id,
        "properties": asdict(properties),
        "findings": [finding(f) for f in findings],
    }
