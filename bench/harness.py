"""What every benchmark shares: its registration, its report, statistics, the machine's
description and the results file."""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

RESULTS_FILE = Path(__file__).parent / "RESULTS.md"

RESULTS_HEADER = """\
# Benchmark results

Appended by `make bench` (`python -m bench [name]`); newest section last. Each section is one
run: when, on which machine and commit, then one subsection per benchmark.

How to read it: absolute figures (calls/s, milliseconds) swing by tens of percent between runs
and machines (see the load average: other work shares the cores), so compare runs through the
*ratio* columns. Each ratio compares the subject with a baseline (e.g. a bare gRPC echo server)
measured in the same run, the two interleaved in rounds, so machine noise mostly cancels out.
The `range over rounds` column shows how much a ratio moved between the rounds of one run;
differences between runs smaller than that range are noise.
"""


@dataclass(frozen=True)
class Table:
    """A table rendered as Markdown with padded columns, so it reads well in a terminal too.

    `align` has one letter per column, `l` or `r`; by default the first column is left-aligned
    and the others (figures) right-aligned."""

    headers: Sequence[str]
    rows: Sequence[Sequence[str]]
    align: str = ""

    def markdown(self) -> str:
        align = self.align or "l" + "r" * (len(self.headers) - 1)
        if len(align) != len(self.headers) or any(len(r) != len(self.headers) for r in self.rows):
            raise ValueError("every row and the alignment need one entry per header")
        widths = [
            max(3, len(h), *(len(r[i]) for r in self.rows)) for i, h in enumerate(self.headers)
        ]

        def line(cells: Sequence[str]) -> str:
            padded = (
                c.rjust(w) if a == "r" else c.ljust(w)
                for c, w, a in zip(cells, widths, align, strict=True)
            )
            return "| " + " | ".join(padded) + " |"

        rule = (
            "|"
            + "|".join(
                "-" * (w + 1) + ":" if a == "r" else "-" * (w + 2)
                for w, a in zip(widths, align, strict=True)
            )
            + "|"
        )
        return "\n".join([line(self.headers), rule, *(line(r) for r in self.rows)])


@dataclass(frozen=True)
class Report:
    """One benchmark's outcome: its name and a title, its tables and short conclusions (e.g.
    whether a target was met)."""

    name: str
    title: str
    tables: Sequence[Table]
    notes: Sequence[str] = field(default_factory=list)

    def markdown(self) -> str:
        parts = [f"### {self.name}: {self.title}"]
        parts += [t.markdown() for t in self.tables]
        if self.notes:
            parts.append("\n".join(f"- {n}" for n in self.notes))
        return "\n\n".join(parts)


@dataclass(frozen=True)
class Benchmark:
    """A registered benchmark: `run` measures and returns the report (it must stay bounded in
    time, well under a minute, and clean up every process and file it made)."""

    name: str
    summary: str
    run: Callable[[], Report]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 1]) of an already sorted, non-empty sequence."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _ram_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024**2:.1f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return "unknown RAM"


def describe_machine() -> str:
    """CPU model, cores (and how many this process may use), RAM, OS, Python and grpcio."""
    cores = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    core_text = f"{cores} cores" + (f" ({usable} usable)" if usable != cores else "")
    return (
        f"{_cpu_model()}, {core_text}, {_ram_gib()}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}; grpcio {grpc.__version__}"
    )


def describe_load() -> str:
    """The load averages when the run starts: other work on the machine competes for its cores
    and moves the absolute figures (less so the ratios)."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min)"


def describe_commit() -> str:
    """The checked-out commit, flagged when the working tree has changes (results then describe
    code that no commit holds)."""
    repo = Path(__file__).parent.parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown commit"
    return f"{commit} (with uncommitted changes)" if dirty else commit


def results_section(reports: Sequence[Report], when: dt.datetime, load: str) -> str:
    """The dated Markdown section one run appends to the results file; `load` is
    describe_load() taken when the run started."""
    names = ", ".join(r.name for r in reports)
    head = [
        f"## {when.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC: {names}",
        "",
        f"- Machine: {describe_machine()}",
        f"- Load average at start: {load}",
        f"- Commit: {describe_commit()}",
    ]
    return "\n\n".join(["\n".join(head), *(r.markdown() for r in reports)]) + "\n"


def append_results(section: str, path: Path = RESULTS_FILE) -> None:
    """Appends a section, creating the file with its how-to-read header the first time."""
    with path.open("a", encoding="utf-8") as out:
        if out.tell() == 0:
            out.write(RESULTS_HEADER)
        out.write("\n" + section)
