"""cli_startup: how long `cofab --help` and `cofab whoami` take to start, against a bare
`python -c pass` measured in the same run (target: at most 0.3 s above it), with
`python -c "import grpc"` as the floor every Python gRPC client pays.

Each command runs as a user runs it (the `cofab` script of the venv, a fresh process), rounds
interleaved so that drift of the machine falls on all alike; `whoami` calls a real design server
(services.design.app, fresh SQLite database) in its own process, so its figure includes one
authenticated RPC on loopback (about a millisecond) besides the start-up.
"""

from __future__ import annotations

import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import Benchmark, Report, Table
from bench.rpc import OURS, prepare_database, server_process

log = logging.getLogger(__name__)

ROUNDS = 10
TARGET_S = 0.3


def _timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr[-500:]}")
    return elapsed


def run() -> Report:
    cofab = shutil.which("cofab", path=os.path.dirname(sys.executable))
    if cofab is None:
        raise RuntimeError("the cofab script is not installed in this venv (make install)")
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'cofab.db'}"
        token = prepare_database(url, Path(tmp))
        server_env = {"COFAB_DATABASE_URL": url, "COFAB_STATE_DIR": tmp}
        with server_process(OURS, server_env) as server:
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": tmp,
                "COFAB_TOKEN": token,
                "COFAB_DESIGN_ADDRESS": f"127.0.0.1:{server.port}",
                "COFAB_SUPPLY_ADDRESS": f"127.0.0.1:{server.port}",
            }
            commands = {
                "python -c pass": [sys.executable, "-c", "pass"],
                # The floor of any gRPC client in Python: grpcio's own import.
                "python -c 'import grpc'": [sys.executable, "-c", "import grpc"],
                "cofab --help": [cofab, "--help"],
                "cofab whoami": [cofab, "whoami"],
            }
            times: dict[str, list[float]] = {label: [] for label in commands}
            for _ in range(ROUNDS):
                for label, argv in commands.items():
                    times[label].append(_timed(argv, env))
    base = statistics.median(times["python -c pass"])
    rows, notes = [], []
    for label, samples in times.items():
        median = statistics.median(samples)
        above = median - base
        rows.append(
            [label, f"{median:.3f}", f"{min(samples):.3f}", f"{max(samples):.3f}", f"{above:+.3f}"]
        )
        if label.startswith("cofab"):
            met = "met" if above <= TARGET_S else "MISSED"
            notes.append(
                f"{label}: {above:.3f} s above python -c pass (target <= {TARGET_S} s): {met}"
            )
    floor = statistics.median(times["python -c 'import grpc'"]) - base
    notes.append(f"importing grpcio alone takes {floor:.3f} s above python -c pass in this run")
    log.info("cli_startup: %s", "; ".join(notes))
    table = Table(["command", "median s", "min s", "max s", "above baseline s"], rows)
    return Report("cli_startup", f"CLI start-up, {ROUNDS} interleaved runs each", [table], notes)


BENCHMARK = Benchmark(
    "cli_startup", "cofab --help and whoami start-up vs python -c pass (target <= 0.3 s)", run
)
