"""SQL storage of the supplier network, on a connection inside a transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select

from services.supply.adapters.tables import facilities
from services.supply.domain import Facility


def _facility(row: Any) -> Facility:
    return Facility(
        id=row.id,
        organization_id=row.organization_id,
        display_name=row.display_name,
        region=row.region,
        country_code=row.country_code,
        latitude=row.latitude,
        longitude=row.longitude,
        create_time=row.create_time,
    )


class SqlRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add_facility(self, facility: Facility) -> None:
        self.conn.execute(
            insert(facilities).values(
                id=facility.id,
                organization_id=facility.organization_id,
                display_name=facility.display_name,
                region=facility.region,
                country_code=facility.country_code,
                latitude=facility.latitude,
                longitude=facility.longitude,
                create_time=facility.create_time,
            )
        )

    def get_facility(self, organization_id: str, facility_id: str) -> Facility | None:
        row = self.conn.execute(
            select(facilities).where(
                facilities.c.organization_id == organization_id, facilities.c.id == facility_id
            )
        ).first()
        return _facility(row) if row is not None else None

    def list_facilities(
        self, organization_id: str, after_seq: int, limit: int
    ) -> list[tuple[int, Facility]]:
        rows = self.conn.execute(
            select(facilities)
            .where(facilities.c.organization_id == organization_id, facilities.c.seq > after_seq)
            .order_by(facilities.c.seq)
            .limit(limit)
        ).all()
        return [(row.seq, _facility(row)) for row in rows]
