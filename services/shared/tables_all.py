"""The whole platform schema: importing this registers every service's tables on `metadata`."""

from services.design.adapters import revision_tables as _revision_tables  # noqa: F401
from services.design.adapters import tables as _design_tables  # noqa: F401
from services.design.comments import tables as _comment_tables  # noqa: F401
from services.design.diffs import tables as _diff_tables  # noqa: F401
from services.design.reviews import tables as _review_tables  # noqa: F401
from services.shared.db import metadata
from services.supply.adapters import tables as _supply_tables  # noqa: F401
from services.supply.procurement import tables as _procurement_tables  # noqa: F401

__all__ = ["metadata"]
