"""The contract says what it needs: every file has its Go import path, every resource its
pattern and identifier, and every request names the resource it acts on as a required field."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator

import pytest
from google.api import field_behavior_pb2, resource_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor, FileDescriptor

import cofab

REQUIRED = field_behavior_pb2.REQUIRED
IDENTIFIER = field_behavior_pb2.IDENTIFIER


def contract_files() -> list[FileDescriptor]:
    files = []
    for module in pkgutil.walk_packages(cofab.__path__, "cofab."):
        if module.name.endswith("_pb2"):
            files.append(importlib.import_module(module.name).DESCRIPTOR)
    return sorted(files, key=lambda f: f.name)


def messages(file: FileDescriptor) -> Iterator[Descriptor]:
    def walk(message: Descriptor) -> Iterator[Descriptor]:
        yield message
        for nested in message.nested_types:
            yield from walk(nested)

    for message in file.message_types_by_name.values():
        yield from walk(message)


def behaviors(field: FieldDescriptor) -> list[int]:
    return list(field.GetOptions().Extensions[field_behavior_pb2.field_behavior])


FILES = contract_files()


def test_every_contract_file_is_found() -> None:
    assert len(FILES) >= 15
    assert {f.package for f in FILES} >= {
        "cofab.common.v1",
        "cofab.design.v1",
        "cofab.events.v1",
        "cofab.identity.v1",
        "cofab.procurement.v1",
        "cofab.supply.v1",
    }


@pytest.mark.parametrize("file", FILES, ids=lambda f: f.name)
def test_every_file_has_its_go_package(file: FileDescriptor) -> None:
    directory = file.name.rsplit("/", 1)[0]
    area = file.package.split(".")[1]
    assert file.GetOptions().go_package == f"cofab.dev/api/gen/go/{directory};{area}v1"


@pytest.mark.parametrize("file", FILES, ids=lambda f: f.name)
def test_resources_have_a_pattern_and_an_identifier(file: FileDescriptor) -> None:
    for message in messages(file):
        resource = message.GetOptions().Extensions[resource_pb2.resource]
        if not resource.type:
            continue
        assert resource.type.startswith("cofab.dev/"), message.full_name
        assert resource.pattern and resource.pattern[0].endswith("}"), message.full_name
        assert behaviors(message.fields_by_name["name"]) == [IDENTIFIER], message.full_name


@pytest.mark.parametrize("file", FILES, ids=lambda f: f.name)
def test_requests_mark_the_resource_they_act_on_as_required(file: FileDescriptor) -> None:
    unmarked = [
        f"{message.full_name}.{field.name}"
        for message in messages(file)
        if message.name.endswith(("Request", "Header"))
        for field in message.fields
        if field.name in ("name", "parent") and REQUIRED not in behaviors(field)
    ]
    assert unmarked == []
