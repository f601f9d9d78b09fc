"""What procurement needs from elsewhere, as small ports, and their adapters.

- DesignRevisions: is a design revision released? Asked over gRPC of the design service with
  the caller's own bearer token, so the design service applies its own access rules.
- SupplierDirectory: the supply network's items, capable-supplier search and supplier risk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import grpc

from cofab.design.v1 import design_pb2, design_pb2_grpc
from services.shared.errors import InvalidArgument, NotFound, Unauthenticated, Unavailable
from services.shared.identity import Principal


class DesignRevisions(Protocol):
    def is_released(self, authorization: str, revision: str) -> bool:
        """Whether `revision` is released; NotFound when the caller cannot see it."""
        ...


class DesignReferences(Protocol):
    def check_readable(self, authorization: str, name: str, field: str) -> None:
        """NotFound unless the caller may read the design or revision `name`."""
        ...


@dataclass(frozen=True)
class ItemLink:
    """An item of the supply network and, for a designed part, its design and pinned revision."""

    name: str
    design: str = ""
    revision: str = ""


@dataclass(frozen=True)
class CapabilityQuery:
    process: str
    material: str
    region: str
    min_capacity: float
    certification: str
    limit: int


class SupplierDirectory(Protocol):
    def item(self, principal: Principal, item_name: str) -> ItemLink:
        """The item if the caller may see it, else NotFound."""
        ...

    def capable_suppliers(self, principal: Principal, query: CapabilityQuery) -> list[str]:
        """Organization ids of suppliers able to make the item, best match first."""
        ...

    def supplier_risk(self, organization_id: str) -> float:
        """The supplier's risk in [0, 1] (0: none known)."""
        ...


class GrpcDesignRevisions:
    """DesignRevisions over the design service's GetRevision, forwarding the caller's token.

    The channel connects lazily, on the first call."""

    def __init__(self, address: str, ca_file: Path | None = None, timeout: float = 10.0) -> None:
        if ca_file is not None:
            credentials = grpc.ssl_channel_credentials(ca_file.read_bytes())
            self._channel = grpc.secure_channel(address, credentials)
        else:
            self._channel = grpc.insecure_channel(address)
        self._stub = design_pb2_grpc.DesignServiceStub(self._channel)
        self._address = address
        self._timeout = timeout

    def is_released(self, authorization: str, revision: str) -> bool:
        try:
            found = self._stub.GetRevision(
                design_pb2.GetRevisionRequest(name=revision),
                metadata=(("authorization", authorization),),
                timeout=self._timeout,
            )
        except grpc.RpcError as error:
            raise _domain_error(error, revision, self._address) from None
        return bool(found.released)

    def check_readable(self, authorization: str, name: str, field: str) -> None:
        """NotFound unless the caller may read the design or revision `name` (`field` names
        it in the request)."""
        try:
            if "/revisions/" in name:
                self._stub.GetRevision(
                    design_pb2.GetRevisionRequest(name=name),
                    metadata=(("authorization", authorization),),
                    timeout=self._timeout,
                )
            else:
                self._stub.GetDesign(
                    design_pb2.GetDesignRequest(name=name),
                    metadata=(("authorization", authorization),),
                    timeout=self._timeout,
                )
        except grpc.RpcError as error:
            raise _domain_error(error, name, self._address, field) from None

    def close(self) -> None:
        self._channel.close()


def _domain_error(
    error: grpc.RpcError, revision: str, address: str, field: str = "rfq.design_revision"
) -> Exception:
    code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (error.details() if isinstance(error, grpc.Call) else None) or ""
    if code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED):
        # The same answer whether the revision is missing or just not the caller's to see.
        return NotFound(f"{revision} not found")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgument.field(field, details)
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return Unauthenticated(details or "the design service refused the caller's token")
    return Unavailable(
        f"the design service at {address} could not check {revision} ({code.name}); retry later"
    )


class LinkedItem(Protocol):
    """What procurement reads of a supply network item."""

    @property
    def design(self) -> str: ...

    @property
    def revision(self) -> str: ...


class CapabilityMatch(Protocol):
    """What procurement reads of a capable-supplier search hit."""

    @property
    def organization_id(self) -> str: ...


class SupplyNetwork(Protocol):
    """The parts of the supply service's application (SupplyApplication) this adapter uses."""

    def get_item(self, principal: Principal, item_name: str) -> LinkedItem: ...

    def search_capable(
        self,
        principal: Principal,
        process: str,
        material: str,
        region: str,
        min_capacity: float,
        certification: str,
        limit: int,
    ) -> Sequence[CapabilityMatch]: ...

    def supplier_risk(self, organization_id: str) -> float: ...


class NetworkDirectory:
    """SupplierDirectory over the supply service's own application layer (same process)."""

    def __init__(self, network: SupplyNetwork) -> None:
        self._network = network

    def item(self, principal: Principal, item_name: str) -> ItemLink:
        found = self._network.get_item(principal, item_name)
        return ItemLink(name=item_name, design=found.design, revision=found.revision)

    def capable_suppliers(self, principal: Principal, query: CapabilityQuery) -> list[str]:
        found = self._network.search_capable(
            principal,
            query.process,
            query.material,
            query.region,
            query.min_capacity,
            query.certification,
            query.limit,
        )
        # One organization may match with several facilities; invite it once, best match first.
        return list(dict.fromkeys(match.organization_id for match in found))

    def supplier_risk(self, organization_id: str) -> float:
        return self._network.supplier_risk(organization_id)
