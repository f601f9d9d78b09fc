"""The whole platform schema: importing this registers every service's tables on `metadata`."""

from services.design.adapters import tables as _design_tables  # noqa: F401
from services.shared.db import metadata
from services.supply.adapters import tables as _supply_tables  # noqa: F401

__all__ = ["metadata"]
