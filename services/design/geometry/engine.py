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

from services.design.geometry import units
from services.design.geometry.checks import (
    CHECK_FUNCTIONS,
    Context,
    edge_counts,
    holes_of,
    solid_mass,
)
from services.design.geometry.loaders import (
    DeclaredUnit,
    Model,
    StepFile,
    body_labels,
    exact_bounds,
    load_mesh,
    load_step,
    mesh_brep,
    read_step,
    volume_and_centre,
)
from services.design.geometry.render import draw, render
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
    Severity,
    SolidProperties,
)

# Below this volume (mm³, relative to the bounding box) a part is taken as having none.
_ZERO_VOLUME_RATIO = 1e-9
# Per-solid properties are listed for at most this many solids or bodies (counts are exact).
MAX_SOLID_PROPERTIES = 1000
# Rule ids of what the engine reports about the file and its own processing, outside any rule set.
FILE_DEFECTS = "file-defects"
TESSELLATION = "tessellation"


def _invalid(reason: str) -> IngestError:
    return IngestError(Failure.INVALID, reason)


def _resolve(request: IngestRequest) -> tuple[RuleSet, str, dict[str, float]]:
    if request.format not in FORMATS:
        raise _invalid(f"unknown format {request.format!r}; expected one of {', '.join(FORMATS)}")
    if request.units and request.units not in UNITS_MM:
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
    artifacts: dict[str, Path] = {}
    try:
        if request.format == "step":
            step = load_step(request.source)
            declared = step.declared
            used, rescaled = _step_units(request, step)
            if rescaled is not None:
                artifacts["model.step"] = rescaled
            model, notices = _brep_model(step.shape)
        else:
            loaded = load_mesh(request.source, request.format)
            declared = loaded.declared
            used = units.resolve(request.units, declared, request.format)
            model, notices = _mesh_model(loaded.mesh, used.mm, request.format, request.work_dir)
        notices = list(used.notices) + notices
        return _measured(
            request, model, notices, used, declared, (rule_set, material, effective), artifacts, {}
        )
    finally:
        # Worker processes run many ingests: drop OpenCascade and trimesh caches promptly.
        gc.collect()


def ingest_script_model(
    request: IngestRequest, step_path: Path, parameters: Mapping[str, ParameterValue]
) -> IngestResult:
    """Ingests the STEP a sandboxed run of the request's script produced: scaled from the
    revision's units to mm (a script's numbers are in the revision's units; it declares none of
    its own), written to work_dir as the `model.step` artifact, then measured."""
    import cadquery as cq

    resolved = _resolve(request)
    used = units.Resolved(request.units or "mm", UNITS_MM[request.units or "mm"], ())
    model_step = request.work_dir / "model.step"
    try:
        if used.mm != 1.0:
            shape = read_step(step_path).scale(used.mm)
            cq.exporters.export(shape, str(model_step), exportType="STEP")
        else:
            shutil.copyfile(step_path, model_step)
        model, notices = _brep_model(read_step(model_step))
        artifacts = {"model.step": model_step}
        return _measured(request, model, notices, used, None, resolved, artifacts, parameters)
    finally:
        gc.collect()


def _measured(
    request: IngestRequest,
    model: Model,
    notices: list[Finding],
    used: units.Resolved,
    declared: DeclaredUnit | None,
    resolved: tuple[RuleSet, str, Mapping[str, float]],
    artifacts: Mapping[str, Path],
    parameters: Mapping[str, ParameterValue],
) -> IngestResult:
    """Properties, findings (the file's notices first) and the artifacts of a loaded model."""
    rule_set, material, effective = resolved
    properties = _properties(model, material, used.unit, declared)
    notices = notices + units.plausibility(float(np.max(model.mesh.extents)), used)
    findings = notices + check_rules(model, rule_set, effective, properties.mass_g)
    written = dict(artifacts)
    written.update(_write_artifacts(request.work_dir, model, properties, findings, rule_set))
    return IngestResult(properties, findings, written, dict(parameters))


def _step_units(request: IngestRequest, step: StepFile) -> tuple[units.Resolved, Path | None]:
    """The unit a STEP is read in. OpenCascade converted the declared unit to mm; units the
    revision names instead win, the shape is rescaled, and the model in mm is written as
    `model.step` (what diffs and merges read)."""
    used = units.resolve(request.units, step.declared, "step")
    file_mm = step.declared.mm if step.declared is not None else 1.0
    if used.mm == file_mm:
        return used, None
    import cadquery as cq

    step.shape = step.shape.scale(used.mm / file_mm)
    path = request.work_dir / "model.step"
    cq.exporters.export(step.shape, str(path), exportType="STEP")
    return used, path


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


def _brep_model(shape: Any) -> tuple[Model, list[Finding]]:
    """The B-rep as a model; closedness is judged on the exact shells, not on our mesh."""
    import cadquery as cq

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
    open_solids = [i for i, s in enumerate(solids) if not _shells_closed(s)]
    if open_solids:
        which = "a solid" if len(solids) == 1 else f"solid {open_solids[0] + 1} of {len(solids)}"
        raise IngestError(Failure.PRECONDITION, f"{which} in the STEP file has an open shell")
    meshed = mesh_brep(shape)
    model = Model(meshed.mesh, shape, meshed.owner, meshed.solid)
    return model, _tessellation_notices(meshed.mesh, meshed.remeshed, meshed.unmeshed)


def _tessellation_notices(
    mesh: Any, remeshed: tuple[int, ...], unmeshed: tuple[int, ...]
) -> list[Finding]:
    """What went wrong in our own meshing, said as such: the B-rep itself is closed."""
    out = []
    if remeshed:
        out.append(
            Finding(
                TESSELLATION,
                Severity.INFO,
                f"the fast mesher left {len(remeshed)} faces without triangles; the part was "
                "meshed again with OpenCascade's default mesher",
                measured=float(len(remeshed)),
            )
        )
    if unmeshed:
        out.append(
            Finding(
                TESSELLATION,
                Severity.WARNING,
                f"{len(unmeshed)} B-rep faces could not be meshed (first: face {unmeshed[0]}); "
                "the B-rep is closed, but the checks measured on the mesh (walls, overhangs, "
                "draft, self-intersection) do not see those faces",
                measured=float(len(unmeshed)),
            )
        )
    boundary, _, _ = edge_counts(mesh)
    if boundary:
        out.append(
            Finding(
                TESSELLATION,
                Severity.INFO,
                f"our tessellation has {boundary} open edges although the B-rep is closed; "
                "ray-based checks may miss thin spots there",
                measured=float(boundary),
            )
        )
    return out


# Triangles along a defect (an open edge) in the picture of a refused mesh; the rest grey.
_DEFECT_COLOUR = (220.0, 40.0, 40.0)
_PLAIN_COLOUR = (170.0, 175.0, 185.0)
_PART_COLOUR = (90.0, 140.0, 200.0)  # the thumbnail's usual blue


def _defect_artifacts(work_dir: Path, mesh: Any) -> dict[str, Path]:
    """The mesh and a thumbnail of a refused mesh, the triangles at open edges in red."""
    faces = np.asarray(mesh.faces, dtype=np.int64)
    edges = np.sort(np.stack([faces, np.roll(faces, -1, axis=1)], axis=2).reshape(-1, 2), axis=1)
    _, inverse, counts = np.unique(edges, axis=0, return_inverse=True, return_counts=True)
    at_open = (counts[inverse.reshape(-1)] == 1).reshape(-1, 3).any(axis=1)
    colours = np.where(at_open[:, None], _DEFECT_COLOUR, _PLAIN_COLOUR)
    mesh_path = work_dir / "mesh.glb"
    mesh.export(str(mesh_path), file_type="glb")
    thumbnail = work_dir / "thumbnail.png"
    draw(mesh.vertices, faces, colours=colours).save(thumbnail, "PNG")
    return {"mesh.glb": mesh_path, "thumbnail.png": thumbnail}


def _mesh_model(
    mesh: Any, scale: float, format: str, work_dir: Path | None = None
) -> tuple[Model, list[Finding]]:
    """The mesh as the file gives it, in mm; its defects reported before anything is repaired."""
    if scale != 1.0:
        mesh.apply_scale(scale)
    boundary, non_manifold, _ = edge_counts(mesh)
    degenerate = int((~mesh.nondegenerate_faces()).sum())
    unique = np.unique(np.sort(np.asarray(mesh.faces), axis=1), axis=0)
    duplicate = int(len(mesh.faces) - len(unique))
    if boundary:
        extra = f"; {degenerate} of its triangles have zero area" if degenerate else ""
        raise IngestError(
            Failure.PRECONDITION,
            f"the mesh is not closed: {boundary} boundary edges (holes in the surface){extra}; "
            "a revision must be a watertight solid",
            _defect_artifacts(work_dir, mesh) if work_dir is not None else None,
        )
    if degenerate == len(mesh.faces):
        raise IngestError(
            Failure.PRECONDITION, f"the {format.upper()} file has only degenerate triangles"
        )
    notices = []
    defects = []
    if degenerate:
        defects.append(f"{degenerate} zero-area triangles")
    if duplicate:
        defects.append(f"{duplicate} duplicate triangles")
    if defects:
        notices.append(
            Finding(
                FILE_DEFECTS,
                Severity.WARNING,
                f"the {format.upper()} file has {' and '.join(defects)}; they were kept as "
                "they are (they add no volume) and the surface was checked with them",
                measured=float(degenerate + duplicate),
            )
        )
    labels = body_labels(mesh)
    return Model(mesh, triangle_body=labels if labels.max(initial=0) > 0 else None), notices


def _shell_closed(shell: Any) -> bool:
    from OCP.BRep import BRep_Tool

    return bool(BRep_Tool.IsClosed_s(shell.wrapped))


def _shells_closed(solid: Any) -> bool:
    return all(_shell_closed(shell) for shell in solid.Shells())


def _vec(values: Any) -> tuple[float, float, float]:
    return (float(values[0]), float(values[1]), float(values[2]))


def _solid_properties(model: Model) -> tuple[int, tuple[SolidProperties, ...]]:
    """(number of bodies, each one's properties when there are several)."""
    if model.shape is not None:
        solids = model.shape.Solids()
        if len(solids) < 2:
            return len(solids), ()
        from OCP.TopLoc import TopLoc_Location

        # Placements of one shape share its TShape: the shape without its location hashes
        # the same for all of them.
        first: dict[int, int] = {}
        kinds = [
            first.setdefault(hash(s.wrapped.Located(TopLoc_Location())), i)
            for i, s in enumerate(solids)
        ]
        counts = {k: kinds.count(k) for k in set(kinds)}
        out = []
        mass = solid_mass(model)
        for i, solid in enumerate(solids[:MAX_SOLID_PROPERTIES]):
            volume, centre = mass[i]
            lo, hi = exact_bounds(solid)
            out.append(
                SolidProperties(
                    i,
                    abs(volume),
                    float(solid.Area()),
                    _vec(lo),
                    _vec(hi),
                    _vec(centre),
                    len(solid.Faces()),
                    kinds[i],
                    counts[kinds[i]],
                )
            )
        return len(solids), tuple(out)
    bodies = model.bodies()
    if len(bodies) < 2:
        return len(bodies), ()
    out = []
    for label, triangles in bodies[:MAX_SOLID_PROPERTIES]:
        body = model.body_mesh(triangles)
        with np.errstate(divide="ignore", invalid="ignore"):
            volume = float(body.volume)
            middle = body.center_mass if volume else body.centroid
        out.append(
            SolidProperties(
                label,
                abs(volume),
                float(body.area),
                _vec(body.bounds[0]),
                _vec(body.bounds[1]),
                _vec(middle),
                int(len(triangles)),
                label,
                1,
            )
        )
    return len(bodies), tuple(out)


def _properties(model: Model, material: str, used_units: str, declared: Any) -> Properties:
    mesh = model.mesh
    box_volume = float(np.prod(np.maximum(mesh.extents, 0.0)))
    density = materials()[material].density_g_cm3
    if model.shape is not None:
        shape = model.shape
        mass = solid_mass(model)
        if len(mass) > 1:
            # A compound's volume and centre are its solids', already integrated one by one.
            volume = sum(v for v, _ in mass)
            centre = tuple(
                sum(v * c[k] for v, c in mass) / volume if volume else 0.0 for k in range(3)
            )
        else:
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
    bodies, per_solid = _solid_properties(model)
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
        bodies=bodies,
        units=used_units,
        declared_units=declared.name if declared is not None else None,
        solid_properties=per_solid,
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
    closed = bool(model.mesh.volume > 0)
    overlapping = model.cache.get("overlapping")
    if overlapping and model.triangle_body is not None:
        # Solids that share volume with another are drawn in the defect colour.
        marked = np.isin(model.triangle_body, overlapping)
        colours = np.where(marked[:, None], _DEFECT_COLOUR, _PART_COLOUR)
        draw(model.mesh.vertices, model.mesh.faces, closed=closed, colours=colours).save(
            thumbnail, "PNG"
        )
    else:
        render(model.mesh.vertices, model.mesh.faces, thumbnail, closed=closed)
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
