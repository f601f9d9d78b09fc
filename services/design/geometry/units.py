"""Which length unit a file is read in, and the notices that say so.

A file's own unit (a STEP header's length unit, a 3MF `unit`) is used unless the revision names
units, which then win: the user knows what their numbers mean when an exporter wrote the wrong
header. Formats without a unit (STL, OBJ, PLY, OFF, glTF as exporters use it) are read in the
revision's units, millimetres when it names none, and say so. A part whose size is implausible
in the unit used gets a warning naming the unit that would make it plausible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from services.design.geometry.loaders import DeclaredUnit
from services.design.geometry.types import UNITS_MM, Finding, Severity

RULE_ID = "units"
# A part's largest extent outside this range (mm) is implausible for something made by the
# processes we check; suggestions aim at the middle of it (on a log scale).
PLAUSIBLE_MM = (1.0, 3000.0)
_TYPICAL_MM = 100.0
_NAMES = {"mm": "millimetres", "cm": "centimetres", "m": "metres", "in": "inches"}


@dataclass(frozen=True)
class Resolved:
    unit: str  # the unit the file's numbers are read in
    mm: float  # millimetres per file unit
    notices: tuple[Finding, ...]


def _name(unit: str) -> str:
    return _NAMES.get(unit, unit)


def resolve(requested: str, declared: DeclaredUnit | None, format: str) -> Resolved:
    """The unit used for a file that declares `declared` when the revision asks `requested`
    ("" for none)."""
    if requested:
        notices: tuple[Finding, ...] = ()
        if declared is not None and declared.name != requested:
            notices = (
                Finding(
                    RULE_ID,
                    Severity.WARNING,
                    f"the {format.upper()} file declares {_name(declared.name)} but the "
                    f"revision's units are {_name(requested)}: read in {_name(requested)}, as "
                    f"asked (in the file's own unit it would be "
                    f"{declared.mm / UNITS_MM[requested]:g} times as large)",
                ),
            )
        return Resolved(requested, UNITS_MM[requested], notices)
    if declared is not None:
        return Resolved(declared.name, declared.mm, ())
    return Resolved(
        "mm",
        1.0,
        (
            Finding(
                RULE_ID,
                Severity.INFO,
                f"no unit in the {format.upper()} file, assumed mm (push it with --units to say "
                "otherwise)",
            ),
        ),
    )


def plausibility(largest_mm: float, used: Resolved) -> list[Finding]:
    """A warning when the part's largest extent is implausible, with the unit that fits."""
    low, high = PLAUSIBLE_MM
    if low <= largest_mm <= high or largest_mm <= 0 or not math.isfinite(largest_mm):
        return []
    in_file_units = largest_mm / used.mm
    fits = [
        (abs(math.log(in_file_units * mm / _TYPICAL_MM)), unit)
        for unit, mm in UNITS_MM.items()
        if unit != used.unit and low <= in_file_units * mm <= high
    ]
    size = f"{largest_mm:.3g} mm" if largest_mm < 10 else f"{largest_mm:,.0f} mm"
    message = f"the part is {size} across in {_name(used.unit)}, implausible for a part"
    if fits:
        _, unit = min(fits)
        message += (
            f"; in {_name(unit)} it would be {in_file_units * UNITS_MM[unit]:,.3g} mm: push it "
            f"with --units {unit} if that is what the file means"
        )
    return [Finding(RULE_ID, Severity.WARNING, message, measured=largest_mm, unit="mm")]
