"""The stored JSON of diffs round-trips (property-based), and the merge base of a revision DAG
is the nearest common ancestor (checked against a brute-force search)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from services.design.diffs.domain import merge_base
from services.design.geometry.codec import (
    conflict_from_json,
    conflict_to_json,
    diff_from_json,
    diff_to_json,
    properties_from_json,
    properties_json,
)
from services.design.geometry.types import (
    Conflict,
    DiffResult,
    FaceChange,
    FaceSignature,
    Finding,
    Location,
    ParameterDelta,
    Properties,
    Region,
    Severity,
    SolidProperties,
)

floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
vectors = st.tuples(floats, floats, floats)
regions = st.builds(Region, floats, vectors, vectors, vectors)
signatures = st.builds(
    FaceSignature,
    st.sampled_from(["plane", "cylinder", "cone", "bspline"]),
    floats,
    vectors,
    vectors,
    st.none() | floats,
)
face_changes = st.builds(
    FaceChange,
    st.sampled_from(["added", "removed", "modified"]),
    st.none() | st.integers(0, 10_000),
    st.none() | st.integers(0, 10_000),
    st.none() | signatures,
    st.none() | signatures,
)
parameter_values = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | floats | st.text()
findings = st.builds(
    Finding,
    st.text(min_size=1),
    st.sampled_from(list(Severity)),
    st.text(),
    st.none() | floats,
    st.none() | floats,
    st.text(),
    st.none() | st.builds(Location, vectors, st.none() | st.integers(0, 500)),
)
diffs = st.builds(
    DiffResult,
    exact=st.booleans(),
    added=st.lists(regions, max_size=3).map(tuple),
    removed=st.lists(regions, max_size=3).map(tuple),
    added_volume_mm3=floats,
    removed_volume_mm3=floats,
    faces=st.lists(face_changes, max_size=4).map(tuple),
    unchanged_faces=st.integers(0, 10_000),
    face_map=st.dictionaries(st.integers(0, 10_000), st.integers(0, 10_000), max_size=6),
    max_deviation_mm=floats,
    rms_deviation_mm=floats,
    volume_delta_mm3=floats,
    area_delta_mm2=floats,
    mass_delta_g=st.none() | floats,
    bbox_min_delta=vectors,
    bbox_max_delta=vectors,
    parameters=st.lists(
        st.builds(ParameterDelta, st.text(), parameter_values, parameter_values), max_size=3
    ).map(tuple),
    findings_introduced=st.lists(findings, max_size=2).map(tuple),
    findings_resolved=st.lists(findings, max_size=2).map(tuple),
    artifacts=st.just({}),
)


@given(diffs)
def test_a_diff_survives_json(diff: DiffResult) -> None:
    # Through text, as the database stores it.
    stored = json.loads(json.dumps(diff_to_json(diff)))
    back = diff_from_json(stored)
    assert back == diff
    # Exact types too: 2 (int) and 2.0 (float) are different script parameter values.
    for before, after in zip(diff.parameters, back.parameters, strict=True):
        assert type(before.before) is type(after.before)
        assert type(before.after) is type(after.after)


def test_artifact_paths_are_not_stored() -> None:
    diff = DiffResult(
        True, (), (), 0.0, 0.0, (), 4, {0: 0}, 0.0, 0.0, 0.0, 0.0, None,
        (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), (), (), (), {"diff.png": Path("/tmp/diff.png")},
    )  # fmt: skip
    assert "artifacts" not in diff_to_json(diff)
    assert diff_from_json(diff_to_json(diff)).artifacts == {}


@given(
    st.builds(
        Conflict,
        floats,
        vectors,
        vectors,
        st.lists(st.integers(0, 999), max_size=4).map(tuple),
        st.lists(st.integers(0, 999), max_size=4).map(tuple),
        st.lists(st.text(), max_size=3).map(tuple),
        st.text(),
    )
)
def test_a_conflict_survives_json(conflict: Conflict) -> None:
    assert conflict_from_json(json.loads(json.dumps(conflict_to_json(conflict)))) == conflict


# merge base --------------------------------------------------------------------------------


@st.composite
def dags(draw: st.DrawFn) -> dict[str, tuple[str, ...]]:
    """Revisions r0..rn, each with up to two parents among the earlier ones (r0 is a root)."""
    count = draw(st.integers(1, 12))
    graph: dict[str, tuple[str, ...]] = {"r0": ()}
    for i in range(1, count):
        earlier = [f"r{j}" for j in range(i)]
        parents = draw(st.lists(st.sampled_from(earlier), min_size=0, max_size=2, unique=True))
        graph[f"r{i}"] = tuple(parents)
    return graph


def _steps(graph: dict[str, tuple[str, ...]], start: str) -> dict[str, int]:
    """Shortest number of parent steps from `start` to each ancestor, by relaxation."""
    best = {start: 0}
    changed = True
    while changed:
        changed = False
        for node, distance in list(best.items()):
            for parent in graph[node]:
                if best.get(parent, math.inf) > distance + 1:
                    best[parent] = distance + 1
                    changed = True
    return best


@given(dags(), st.data())
def test_the_merge_base_is_the_nearest_common_ancestor(
    graph: dict[str, tuple[str, ...]], data: st.DataObject
) -> None:
    ours = data.draw(st.sampled_from(sorted(graph)))
    theirs = data.draw(st.sampled_from(sorted(graph)))
    found = merge_base(graph, ours, theirs)
    a, b = _steps(graph, ours), _steps(graph, theirs)
    common = set(a) & set(b)
    if not common:
        assert found is None
        return
    assert found in common
    assert a[found] + b[found] == min(a[c] + b[c] for c in common)


def test_merge_base_of_two_branches_and_of_a_descendant() -> None:
    graph = {"a": (), "b": ("a",), "c": ("a",), "d": ("b",), "m": ("d", "c")}
    assert merge_base(graph, "d", "c") == "a"
    assert merge_base(graph, "b", "d") == "b"  # a fast-forward: the head is the base
    assert merge_base(graph, "m", "c") == "c"  # already merged
    assert merge_base({"x": (), "y": ()}, "x", "y") is None


solids = st.builds(
    SolidProperties,
    st.integers(0, 100),
    floats,
    floats,
    vectors,
    vectors,
    vectors,
    st.none() | st.integers(0, 10_000),
    st.integers(0, 100),
    st.integers(1, 100),
)
properties = st.builds(
    Properties,
    volume_mm3=floats,
    area_mm2=floats,
    bbox_min=vectors,
    bbox_max=vectors,
    center_of_mass=vectors,
    mass_g=st.none() | floats,
    material=st.none() | st.text(max_size=10),
    triangles=st.integers(0, 10**7),
    is_brep=st.booleans(),
    bodies=st.none() | st.integers(0, 1000),
    units=st.sampled_from(["mm", "cm", "m", "in", "ft"]),
    declared_units=st.none() | st.sampled_from(["mm", "in", "um"]),
    solid_properties=st.lists(solids, max_size=4).map(tuple),
)


@given(properties)
def test_properties_round_trip_through_json(value: Properties) -> None:
    stored = json.loads(json.dumps(properties_json(value)))
    assert properties_from_json(stored) == value


def test_properties_stored_before_units_and_bodies_read_with_defaults() -> None:
    old = {
        "volume_mm3": 1.0,
        "area_mm2": 6.0,
        "bbox_min": [0, 0, 0],
        "bbox_max": [1, 1, 1],
        "center_of_mass": [0.5, 0.5, 0.5],
        "mass_g": None,
        "material": None,
        "triangles": 12,
        "is_brep": False,
    }
    read = properties_from_json(old)
    assert (read.units, read.declared_units, read.bodies, read.solid_properties) == (
        "mm",
        None,
        None,
        (),
    )
