"""The supply service's domain: plain values and rules, no I/O."""

from services.supply.domain.model import Facility, check_facility

__all__ = ["Facility", "check_facility"]
