"""Conformance of a 3MF package to the 3MF core specification, before trimesh reads it.

trimesh reads what it can and drops the rest (an undefined object, a second model part), so a
non-conforming file would become a part with a silently different shape. The checks here are
the MUST rules of the core specification that decide what the geometry is: the package's
relationships, one model part, resources and build, object types and the references between
ids. A violation refuses the file with the rule it breaks.
"""

from __future__ import annotations

import posixpath
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

from services.design.geometry.types import Failure, IngestError

CORE = "{http://schemas.microsoft.com/3dmanufacturing/core/2015/02}"
_RELS = "{http://schemas.openxmlformats.org/package/2006/relationships}"
_XML_SPACE = "{http://www.w3.org/XML/1998/namespace}space"
_MODEL_REL = "http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"
_PRINT_TICKET = "/printticket"
OBJECT_TYPES = ("model", "support", "solidsupport", "surface", "other")


def _refuse(reason: str) -> IngestError:
    return IngestError(Failure.INVALID, f"the 3MF file does not conform to the 3MF spec: {reason}")


def _parse(archive: zipfile.ZipFile, name: str) -> ET.Element:
    data = archive.read(name)
    if b"<!DOCTYPE" in data:
        raise _refuse(f"{name} has a document type definition (not allowed)")
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        raise _refuse(f"{name} is not well-formed XML ({exc})") from None


def _relationships(archive: zipfile.ZipFile, names: set[str]) -> list[tuple[str, str, str]]:
    """(source part, type, target) of every relationship in the package."""
    out = []
    for rels in sorted(n for n in names if n.endswith(".rels")):
        folder = posixpath.dirname(posixpath.dirname(rels))  # a/_rels/b.rels describes a/b
        for rel in _parse(archive, rels).iter(f"{_RELS}Relationship"):
            kind = rel.get("Type", "")
            target = rel.get("Target", "")
            if rel.get("TargetMode") == "External":
                raise _refuse(f"a relationship in {rels} points outside the package ({kind})")
            path = target.lstrip("/") if target.startswith("/") else posixpath.join(folder, target)
            out.append((rels, kind, posixpath.normpath(path)))
    return out


def check_3mf(path: Path) -> None:
    """Raises IngestError(INVALID) when the package breaks a core MUST rule."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = {n for n in archive.namelist() if not n.endswith("/")}
            if "_rels/.rels" not in names:
                raise _refuse("the package has no _rels/.rels")
            relationships = _relationships(archive, names)
            for source, _kind, target in relationships:
                if target not in names:
                    raise _refuse(f"{source} names the part /{target}, which is not in the package")
            models = [t for s, k, t in relationships if s == "_rels/.rels" and k == _MODEL_REL]
            if len(models) != 1:
                raise _refuse(f"the package has {len(models)} 3D model parts, not one")
            tickets = [t for _, k, t in relationships if k.lower().endswith(_PRINT_TICKET)]
            if len(tickets) > 1:
                raise _refuse(f"the package has {len(tickets)} print tickets, at most one")
            _check_model(_parse(archive, models[0]))
    except zipfile.BadZipFile as exc:
        raise IngestError(Failure.INVALID, f"the 3MF file is not a readable ZIP: {exc}") from None


def _check_model(root: ET.Element) -> None:
    if root.tag != f"{CORE}model":
        raise _refuse("the model part's root is not a 3MF core <model>")
    for element in root.iter():
        if _XML_SPACE in element.attrib:
            raise _refuse("xml:space is used (not allowed)")
    for child in ("resources", "build"):
        found = root.findall(f"{CORE}{child}")
        if len(found) != 1:
            raise _refuse(f"the model has {len(found)} <{child}> elements, not one")
    metadata = [m.get("name") for m in root.findall(f"{CORE}metadata")]
    if None in metadata:
        raise _refuse("a <metadata> element has no name")
    repeated = sorted({n for n in metadata if metadata.count(n) > 1 and n is not None})
    if repeated:
        raise _refuse(f"metadata {repeated[0]!r} is given twice")
    resources = root.find(f"{CORE}resources")
    assert resources is not None
    ids: dict[str, str] = {}
    for resource in resources:
        rid = resource.get("id")
        if rid is None:
            continue
        if rid in ids:
            raise _refuse(f"resource id {rid} is defined twice")
        ids[rid] = resource.tag
    objects = {o.get("id"): o for o in resources.findall(f"{CORE}object")}
    for oid, obj in objects.items():
        kind = obj.get("type", "model")
        if kind not in OBJECT_TYPES:
            raise _refuse(
                f"object {oid} has type {kind[:20]!r}, not one of {', '.join(OBJECT_TYPES)}"
            )
        if obj.get("pindex") is not None and obj.get("pid") is None:
            raise _refuse(f"object {oid} has a pindex but no pid")
        pid = obj.get("pid")
        if pid is not None and pid not in ids:
            raise _refuse(f"object {oid} refers to property group {pid}, which is not defined")
        for component in obj.iter(f"{CORE}component"):
            ref = component.get("objectid")
            if ref not in objects:
                raise _refuse(f"object {oid} includes object {ref}, which is not defined")
    build = root.find(f"{CORE}build")
    assert build is not None
    for item in build.findall(f"{CORE}item"):
        ref = item.get("objectid")
        if ref not in objects:
            raise _refuse(f"the build includes object {ref}, which is not defined")
        if objects[ref].get("type") == "other":
            raise _refuse(f"the build includes object {ref}, whose type is 'other'")
