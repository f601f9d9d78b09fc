"""`python -m bench [name ...]`: runs the named benchmarks (all when none is named), prints
their reports and appends them, dated and with the machine's description, to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from collections.abc import Sequence

from bench import (
    cli_startup,
    design_upload,
    geometry,
    geometry_diff,
    reviews,
    rfq_fanout,
    rfq_quotes,
    rpc,
    supply_import,
    supply_network,
)
from bench.harness import (
    RESULTS_FILE,
    Benchmark,
    append_results,
    describe_load,
    results_section,
)

# Every benchmark, in the order a full run executes them. Add new ones as modules in bench/
# exposing their `Benchmark`s, and list them here.
BENCHMARKS: list[Benchmark] = [
    rpc.BENCHMARK,
    rpc.UNCACHED_BENCHMARK,
    design_upload.BENCHMARK,
    design_upload.PUSH_STEP_BENCHMARK,
    geometry.STEP_BENCHMARK,
    geometry.ASSEMBLY_BENCHMARK,
    geometry.MESH_BENCHMARK,
    geometry_diff.MESH_BENCHMARK,
    geometry_diff.PLATE_BENCHMARK,
    geometry_diff.MERGE_BENCHMARK,
    supply_network.BENCHMARK,
    supply_network.SEARCH_BENCHMARK,
    supply_import.BENCHMARK,
    rfq_fanout.BENCHMARK,
    rfq_quotes.BENCHMARK,
    reviews.BENCHMARK,
    cli_startup.BENCHMARK,
]


def main(argv: Sequence[str] | None = None) -> int:
    by_name = {b.name: b for b in BENCHMARKS}
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Runs cofab benchmarks and appends their figures to bench/RESULTS.md.",
        epilog="benchmarks: " + "; ".join(f"{b.name}: {b.summary}" for b in BENCHMARKS),
    )
    parser.add_argument("names", nargs="*", metavar="name", help="benchmarks to run (all if none)")
    parser.add_argument(
        "--no-record", action="store_true", help=f"print only; do not append to {RESULTS_FILE}"
    )
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in by_name]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; known: {', '.join(by_name)}")
    # Progress goes to stderr so stdout carries only the reports.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("bench").setLevel(logging.INFO)

    when, load = dt.datetime.now(dt.UTC), describe_load()
    selected = [by_name[n] for n in args.names] or BENCHMARKS
    reports = [b.run() for b in selected]
    section = results_section(reports, when, load)
    print(section)
    if not args.no_record:
        append_results(section)
        print(f"appended to {RESULTS_FILE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
