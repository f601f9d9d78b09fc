"""Use cases of the supply service, each in one transaction with its audit entry and event."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable

from sqlalchemy import Engine

from services.shared import audit, authz, idempotency, outbox
from services.shared.db import utcnow
from services.shared.errors import NotFound
from services.shared.events import make_envelope
from services.shared.identity import Principal
from services.shared.paging import Listed, Page, page_of
from services.supply.adapters.repository import SqlRepository
from services.supply.convert import facility_created
from services.supply.domain import Facility, check_facility

SOURCE = "//cofab/supply"
Clock = Callable[[], dt.datetime]


class SupplyApplication:
    def __init__(self, engine: Engine, clock: Clock = utcnow) -> None:
        self._engine = engine
        self._clock = clock

    def create_facility(
        self,
        principal: Principal,
        organization_id: str,
        display_name: str,
        region: str,
        country_code: str,
        latitude: float,
        longitude: float,
        request_id: str,
    ) -> Facility:
        authz.require_own_organization(
            principal, organization_id, f"organizations/{organization_id}"
        )
        check_facility(display_name, region, country_code, latitude, longitude)
        with self._engine.begin() as conn:
            repo = SqlRepository(conn)
            earlier = idempotency.replayed(conn, principal, "CreateFacility", request_id)
            if earlier is not None:
                return self._facility(repo, earlier.split("/")[1], earlier.split("/")[3])
            facility = Facility(
                uuid.uuid4().hex,
                organization_id,
                display_name.strip(),
                region,
                country_code,
                latitude,
                longitude,
                self._clock(),
            )
            repo.add_facility(facility)
            envelope = make_envelope(
                source=SOURCE,
                event_type="supply.facility.created",
                subject=facility.name,
                organization=principal.organization_name,
                data=facility_created(facility),
            )
            outbox.enqueue(conn, envelope, key=facility.id)
            audit.record(conn, principal, "facility.create", facility.name)
            idempotency.remember(conn, principal, "CreateFacility", request_id, facility.name)
        return facility

    def get_facility(
        self, principal: Principal, organization_id: str, facility_id: str
    ) -> Facility:
        name = f"organizations/{organization_id}/facilities/{facility_id}"
        authz.require_own_organization(principal, organization_id, name)
        with self._engine.begin() as conn:
            return self._facility(SqlRepository(conn), organization_id, facility_id)

    def list_facilities(
        self, principal: Principal, organization_id: str, page: Page
    ) -> Listed[Facility]:
        authz.require_own_organization(
            principal, organization_id, f"organizations/{organization_id}"
        )
        with self._engine.begin() as conn:
            rows = SqlRepository(conn).list_facilities(
                organization_id, page.after_seq, page.limit + 1
            )
        return page_of(page, rows)

    def _facility(self, repo: SqlRepository, organization_id: str, facility_id: str) -> Facility:
        facility = repo.get_facility(organization_id, facility_id)
        if facility is None:
            raise NotFound(f"organizations/{organization_id}/facilities/{facility_id} not found")
        return facility
