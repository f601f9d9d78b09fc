"""Pure rules of revisions: header checks, script parameters, failure mapping, conversions."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from cofab.design.v1 import design_pb2
from services.design.convert import parameter_from_proto, parameter_value, revision_proto
from services.design.domain.revisions import (
    ProcessingError,
    Revision,
    RevisionState,
    check_branch,
    check_format,
    check_parameters,
    check_sha256,
    check_size,
    check_units,
    findings_summary,
    ingest_failure,
    processing_error,
)
from services.design.geometry.types import Failure, ParameterSpec, ParameterValue
from services.shared.config import ConfigError, load_settings
from services.shared.errors import FailedPrecondition, InvalidArgument, ResourceExhausted


def test_defaults_and_refusals() -> None:
    assert check_branch("") == "main"
    assert check_units("") == ""  # the file's own unit, mm when it has none
    assert check_units("in") == "in"
    with pytest.raises(InvalidArgument, match="units: 'furlong' is not one of mm, cm, m, in"):
        check_units("furlong")
    with pytest.raises(InvalidArgument, match="format: 'dwg'"):
        check_format("dwg")
    with pytest.raises(InvalidArgument, match="branch"):
        check_branch("Feature/X")
    with pytest.raises(InvalidArgument, match="sha256"):
        check_sha256("A" * 64)


def test_size_limits() -> None:
    assert check_size(10, 10) == 10
    with pytest.raises(InvalidArgument, match="empty"):
        check_size(0, 10)
    with pytest.raises(ResourceExhausted, match="over the upload limit of 10 bytes"):
        check_size(11, 10)


SPECS = {
    "width": ParameterSpec("width", "float", 10.0),
    "holes": ParameterSpec("holes", "int", 4),
    "label": ParameterSpec("label", "str", "A"),
    "chamfer": ParameterSpec("chamfer", "bool", False),
}


def test_script_parameters_against_declarations() -> None:
    checked = check_parameters("cadquery", {"width": 12, "holes": 6, "chamfer": True}, SPECS)
    assert checked == {"width": 12, "holes": 6, "chamfer": True}
    cases: list[tuple[dict[str, ParameterValue], str]] = [
        ({"depth": 1.0}, "declares no parameter 'depth'"),
        ({"holes": 2.5}, "must be a int"),
        ({"width": "wide"}, "must be a float"),
        ({"width": True}, "must be a float"),
        ({"width": float("nan")}, "finite"),
        ({"chamfer": 1}, "must be a bool"),
    ]
    for given, message in cases:
        with pytest.raises(InvalidArgument, match=message) as caught:
            check_parameters("cadquery", given, SPECS)
        assert caught.value.violations[0].field.startswith("parameters[")
    with pytest.raises(InvalidArgument, match="only cadquery scripts"):
        check_parameters("step", {"width": 1.0}, None)


def test_engine_failures_map_to_api_errors() -> None:
    assert isinstance(ingest_failure(Failure.INVALID, "x"), InvalidArgument)
    assert isinstance(ingest_failure(Failure.PRECONDITION, "x"), FailedPrecondition)
    assert isinstance(ingest_failure(Failure.TOO_LARGE, "x"), ResourceExhausted)
    assert processing_error(Failure.INVALID, "bad").code == 3
    assert processing_error(Failure.PRECONDITION, "open").code == 9
    assert processing_error(Failure.TOO_LARGE, "big").code == 8


@pytest.mark.parametrize("value", [True, 3, 2.5, "text"])
def test_parameter_values_round_trip(value: float | int | str | bool) -> None:
    back = parameter_from_proto(parameter_value(value), "p")
    assert back == value and type(back) is type(value)
    with pytest.raises(InvalidArgument, match="has no value"):
        parameter_from_proto(design_pb2.ParameterValue(), "p")


def test_revision_proto_of_a_failed_revision() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    revision = Revision(
        id="r2",
        project_id="p",
        design_id="d",
        parents=("r1",),
        branch="main",
        author="organizations/acme/users/alice",
        message="",
        format="stl",
        units="mm",
        sha256="0" * 64,
        size_bytes=84,
        parameters={},
        rule_set="fdm-printing",
        material=None,
        rule_overrides={},
        state=RevisionState.FAILED,
        create_time=now,
        update_time=now,
        error=ProcessingError(9, "the mesh is not closed"),
        findings=({"severity": "error"}, {"severity": "warning"}, {"severity": "error"}),
    )
    message = revision_proto(revision)
    assert message.name == "projects/p/designs/d/revisions/r2"
    assert list(message.parents) == ["projects/p/designs/d/revisions/r1"]
    assert message.state == design_pb2.Revision.STATE_FAILED
    assert (message.error.code, message.error.message) == (9, "the mesh is not closed")
    assert not message.HasField("properties") and not message.artifacts
    assert (message.findings_summary.error, message.findings_summary.warning) == (2, 1)
    assert findings_summary(revision.findings) == {"info": 0, "warning": 1, "error": 2}


def test_revision_settings() -> None:
    defaults = load_settings({"COFAB_STATE_DIR": "/srv/cofab"})
    assert defaults.max_upload_bytes == 512 * 1024 * 1024
    assert defaults.blob_root == Path("/srv/cofab/blobs")
    custom = load_settings(
        {
            "COFAB_MAX_UPLOAD_BYTES": "1000",
            "COFAB_BLOB_DIR": "/data/blobs",
            "COFAB_INGEST_WORKERS": "4",
        }
    )
    assert (custom.max_upload_bytes, custom.blob_root, custom.ingest_workers) == (
        1000,
        Path("/data/blobs"),
        4,
    )
    for name, value in (("COFAB_MAX_UPLOAD_BYTES", "lots"), ("COFAB_INGEST_WORKERS", "0")):
        with pytest.raises(ConfigError, match=name):
            load_settings({name: value})
