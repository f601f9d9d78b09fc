"""rpc: one authenticated unary RPC on the design server against a bare grpc.aio echo server.

Ours is `IdentityService/GetCallerIdentity` on the real design server (services.design.app,
fresh SQLite database): the interceptor looks the bearer token up in the database and the
handler reads the user from it, each in a worker thread. The baseline is a grpc.aio server
without interceptors whose generic handler returns a fixed CallerIdentity equal to ours' answer,
so both move the same bytes; both are sent the same `authorization` metadata.

Each server runs in its own (spawned) process, so the load generator, grpc.aio with N callers in
flight over one channel, shares neither the GIL nor an event loop with it. Phases alternate
echo, ours, echo, ours so that drift of the machine falls on both alike.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import statistics
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import grpc

from bench.harness import Benchmark, Report, Table, percentile
from cofab.identity.v1 import identity_pb2
from services.design.app import bootstrap, build_server
from services.shared import accounts, audit
from services.shared.config import load_settings
from services.shared.migrate import upgrade
from services.shared.server import mark_serving

log = logging.getLogger(__name__)

ORGANIZATION, ORGANIZATION_DISPLAY, USER = "acme", "ACME", "alice"
# Ours' answer for alice; the echo server returns it verbatim so the payloads are identical.
EXPECTED = identity_pb2.CallerIdentity(
    organization=f"organizations/{ORGANIZATION}",
    user=f"organizations/{ORGANIZATION}/users/{USER}",
    user_display_name=USER,
    organization_display_name=ORGANIZATION_DISPLAY,
)
CALL_TIMEOUT_S = 10.0
# Spawned servers import grpc, SQLAlchemy and the services afresh; a slow disk can take seconds.
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
# Above this share of a core, the load generator rather than the echo server may bound the
# baseline, which would make ours look better than it is.
CLIENT_SATURATED = 0.9


@dataclass(frozen=True)
class RpcConfig:
    """Load shape. The defaults keep the whole benchmark near 40 s: 2 rounds x 2 servers x 6 s
    at `concurrency`, then 2 x 2 x 3 s with one call in flight, plus server start-up."""

    concurrency: int = 16
    warmup_s: float = 1.0
    measure_s: float = 5.0
    rounds: int = 2
    single_warmup_s: float = 0.5
    single_measure_s: float = 2.5
    single_rounds: int = 2
    target_ratio: float = 0.6
    # Seconds a valid token is trusted without a database read (COFAB_AUTH_CACHE_SECONDS):
    # the default measures the steady state, 0 the worst case of a lookup on every call.
    auth_cache_seconds: float = 10.0

    def __post_init__(self) -> None:
        # The report sets `concurrency` against one call in flight; the two must differ.
        if self.concurrency <= 1:
            raise ValueError("concurrency must be more than 1 (one in flight is measured anyway)")


# --- server processes -------------------------------------------------------------------------

Stop = Callable[[], Awaitable[None]]
# Starts a server in the current (server) process from its settings environment; returns the
# bound port and how to stop it.
Starter = Callable[[dict[str, str]], Awaitable[tuple[int, Stop]]]


async def start_echo(env: dict[str, str]) -> tuple[int, Stop]:
    """The baseline: a bare grpc.aio server, no interceptors, a generic handler."""

    async def echo(
        request: identity_pb2.GetCallerIdentityRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> identity_pb2.CallerIdentity:
        return EXPECTED

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo",
        {
            "Echo": grpc.unary_unary_rpc_method_handler(
                echo,
                request_deserializer=identity_pb2.GetCallerIdentityRequest.FromString,
                response_serializer=identity_pb2.CallerIdentity.SerializeToString,
            )
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()

    async def stop() -> None:
        await server.stop(1.0)

    return port, stop


async def start_ours(env: dict[str, str]) -> tuple[int, Stop]:
    """The real design server, as services.design.app builds it, on the database in `env`."""
    settings = load_settings(env)
    built = build_server(settings, bootstrap(settings), listen="127.0.0.1:0")
    await built.start()
    await mark_serving(built)

    async def stop() -> None:
        await built.stop(grace=1.0)

    return built.port, stop


@dataclass(frozen=True)
class Subject:
    """A server to measure: its label, how its process starts it (a module-level function, as
    the spawned process imports it by name) and the unary method to call on it."""

    label: str
    start: Starter
    method: str


ECHO = Subject("echo", start_echo, "/bench.Echo/Echo")
OURS = Subject("ours", start_ours, "/cofab.identity.v1.IdentityService/GetCallerIdentity")


async def _serve_async(start: Starter, env: dict[str, str], control: Connection) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    # Ctrl-C reaches the whole process group; stop cleanly instead of dumping a traceback.
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    try:
        port, stop = await start(env)
    except Exception:
        control.send(("error", traceback.format_exc()))
        raise
    control.send(("ready", port))
    # Any message or EOF stops us; EOF also comes when the parent dies without cleaning up,
    # so a crashed benchmark leaves no orphaned servers behind.
    loop.add_reader(control.fileno(), stopping.set)
    await stopping.wait()
    loop.remove_reader(control.fileno())
    await stop()


def _serve(start: Starter, env: dict[str, str], control: Connection) -> None:
    """Entry point of a spawned server process: serves until `control` is closed or written."""
    try:
        asyncio.run(_serve_async(start, env, control))
    finally:
        control.close()


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of a process (Linux /proc)."""
    # The command name in field 2 may contain spaces; the fields after its ')' are fixed:
    # state is field 3, utime and stime are fields 14 and 15.
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


@dataclass(frozen=True)
class ServerProcess:
    subject: Subject
    process: BaseProcess
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        if self.process.pid is None:
            raise RuntimeError(f"{self.subject.label} server process is not running")
        return _process_cpu_seconds(self.process.pid)


@contextmanager
def server_process(subject: Subject, env: dict[str, str]) -> Iterator[ServerProcess]:
    """Runs a server in a spawned process (spawn, not fork: grpc's threads do not survive fork)
    and stops it on exit, forcibly if it does not stop in time."""
    context = multiprocessing.get_context("spawn")
    ours_end, child_end = context.Pipe()
    process = context.Process(
        target=_serve,
        args=(subject.start, env, child_end),
        name=f"bench-{subject.label}-server",
        daemon=True,
    )
    process.start()
    # Only the child may hold its end, or the child would never see EOF when we go away.
    child_end.close()
    try:
        if not ours_end.poll(STARTUP_TIMEOUT_S):
            raise RuntimeError(f"{subject.label} server not ready after {STARTUP_TIMEOUT_S:.0f} s")
        try:
            status, value = ours_end.recv()
        except EOFError:
            process.join(STOP_TIMEOUT_S)  # so that its exit code is known
            raise RuntimeError(
                f"{subject.label} server exited during start-up (code {process.exitcode})"
            ) from None
        if status != "ready":
            raise RuntimeError(f"{subject.label} server failed to start:\n{value}")
        yield ServerProcess(subject, process, int(value))
    finally:
        ours_end.close()
        process.join(STOP_TIMEOUT_S)
        if process.is_alive():
            process.kill()
            process.join()


def prepare_database(url: str, state_dir: Path) -> str:
    """Migrates a fresh database, adds organization, user and token; returns the token."""
    upgrade(url)
    engine = audit.audited_engine_in(url, state_dir)
    try:
        accounts.create_organization(engine, ORGANIZATION, ORGANIZATION_DISPLAY)
        accounts.create_user(engine, ORGANIZATION, USER)
        return accounts.create_token(engine, ORGANIZATION, USER).plaintext
    finally:
        engine.dispose()


# --- load generator ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    """One server driven at one concurrency for one measuring window."""

    label: str
    concurrency: int
    round: int
    latencies: Sequence[float]  # seconds, sorted
    seconds: float
    server_cpu_s: float
    client_cpu_s: float

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.seconds

    @property
    def cpu_us_per_call(self) -> float:
        return self.server_cpu_s / len(self.latencies) * 1e6

    def latency_ms(self, q: float) -> float:
        return percentile(self.latencies, q) * 1000


async def drive(
    server: ServerProcess,
    token: str,
    concurrency: int,
    warmup_s: float,
    measure_s: float,
    round_number: int,
) -> Phase:
    """Keeps `concurrency` calls in flight on one fresh channel for warm-up plus measurement;
    records the latency of every call sent inside the measuring window."""
    metadata = (("authorization", f"Bearer {token}"),)
    request = identity_pb2.GetCallerIdentityRequest()
    async with grpc.aio.insecure_channel(server.address) as channel:
        await asyncio.wait_for(channel.channel_ready(), CALL_TIMEOUT_S)
        call = channel.unary_unary(
            server.subject.method,
            request_serializer=identity_pb2.GetCallerIdentityRequest.SerializeToString,
            response_deserializer=identity_pb2.CallerIdentity.FromString,
        )
        # A wrong answer (e.g. authentication failing) would make the figures meaningless.
        first = await call(request, metadata=metadata, timeout=CALL_TIMEOUT_S)
        if first != EXPECTED:
            raise RuntimeError(f"{server.subject.label} server answered {first!r}")

        latencies: list[float] = []
        measure_from = time.perf_counter() + warmup_s
        until = measure_from + measure_s

        async def caller() -> None:
            while (sent := time.perf_counter()) < until:
                await call(request, metadata=metadata, timeout=CALL_TIMEOUT_S)
                if sent >= measure_from:
                    latencies.append(time.perf_counter() - sent)

        async def cpu_at_measure_start() -> tuple[float, float]:
            await asyncio.sleep(measure_from - time.perf_counter())
            return server.cpu_seconds(), time.process_time()

        start_cpu = asyncio.create_task(cpu_at_measure_start())
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        end = time.perf_counter()
        server_cpu, client_cpu = server.cpu_seconds(), time.process_time()
        server_cpu0, client_cpu0 = await start_cpu
    if not latencies:
        raise RuntimeError(f"no call to the {server.subject.label} server completed")
    return Phase(
        label=server.subject.label,
        concurrency=concurrency,
        round=round_number,
        latencies=sorted(latencies),
        seconds=end - measure_from,
        server_cpu_s=server_cpu - server_cpu0,
        client_cpu_s=client_cpu - client_cpu0,
    )


async def _measure(config: RpcConfig, servers: Sequence[ServerProcess], token: str) -> list[Phase]:
    plan = [
        (config.concurrency, config.warmup_s, config.measure_s, config.rounds),
        (1, config.single_warmup_s, config.single_measure_s, config.single_rounds),
    ]
    phases = []
    for concurrency, warmup_s, measure_s, rounds in plan:
        for round_number in range(1, rounds + 1):
            for server in servers:
                log.info(
                    "rpc: %s, %d in flight, round %d",
                    server.subject.label,
                    concurrency,
                    round_number,
                )
                phases.append(
                    await drive(server, token, concurrency, warmup_s, measure_s, round_number)
                )
    return phases


# --- report -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pooled:
    """All rounds of one server at one concurrency taken together."""

    throughput: float
    latencies: Sequence[float]
    cpu_us_per_call: float
    client_cpu_share: float

    @classmethod
    def of(cls, phases: Sequence[Phase]) -> _Pooled:
        calls = sum(len(p.latencies) for p in phases)
        seconds = sum(p.seconds for p in phases)
        return cls(
            throughput=calls / seconds,
            latencies=sorted(x for p in phases for x in p.latencies),
            cpu_us_per_call=sum(p.server_cpu_s for p in phases) / calls * 1e6,
            client_cpu_share=sum(p.client_cpu_s for p in phases) / seconds,
        )

    def latency_ms(self, q: float) -> float:
        return percentile(self.latencies, q) * 1000


def _round_ratios(
    pairs: Sequence[tuple[Phase, Phase]], value: Callable[[Phase], float]
) -> list[float]:
    """ours/echo within each round: the two phases of a round ran back to back, so machine
    drift cancels out of their ratio better than out of figures pooled over the run."""
    return [value(ours) / value(echo) for echo, ours in pairs]


def _report(config: RpcConfig, phases: Sequence[Phase]) -> Report:
    def pick(subject: Subject, concurrency: int) -> list[Phase]:
        return [p for p in phases if p.label == subject.label and p.concurrency == concurrency]

    phase_rows = [
        [
            str(p.concurrency),
            str(p.round),
            p.label,
            f"{p.throughput:,.0f}",
            f"{p.latency_ms(0.5):.2f}",
            f"{p.latency_ms(0.99):.2f}",
            f"{p.cpu_us_per_call:,.0f}",
            f"{p.server_cpu_s / p.seconds:.0%}",
            f"{p.client_cpu_s / p.seconds:.0%}",
        ]
        for p in phases
    ]
    phase_table = Table(
        [
            "in flight",
            "round",
            "server",
            "calls/s",
            "p50 ms",
            "p99 ms",
            "server CPU us/call",
            "server CPU",
            "client CPU",
        ],
        phase_rows,
        align="rrlrrrrrr",
    )

    summary_rows: list[list[str]] = []
    verdict = ""
    client_saturated = False
    for concurrency in (config.concurrency, 1):
        echo_phases, ours_phases = pick(ECHO, concurrency), pick(OURS, concurrency)
        pairs = list(zip(echo_phases, ours_phases, strict=True))
        echo, ours = _Pooled.of(echo_phases), _Pooled.of(ours_phases)
        client_saturated |= echo.client_cpu_share >= CLIENT_SATURATED
        # (metric, its format, its pooled value, its value in one phase)
        metrics: list[tuple[str, str, Callable[[_Pooled], float], Callable[[Phase], float]]] = [
            ("calls/s", ",.0f", lambda x: x.throughput, lambda p: p.throughput),
            ("p50 ms", ".2f", lambda x: x.latency_ms(0.5), lambda p: p.latency_ms(0.5)),
            ("p99 ms", ".2f", lambda x: x.latency_ms(0.99), lambda p: p.latency_ms(0.99)),
            (
                "server CPU us/call",
                ",.0f",
                lambda x: x.cpu_us_per_call,
                lambda p: p.cpu_us_per_call,
            ),
        ]
        for name, fmt, pooled, per_phase in metrics:
            ratios = _round_ratios(pairs, per_phase)
            summary_rows.append(
                [
                    f"{name}, {concurrency} in flight",
                    format(pooled(echo), fmt),
                    format(pooled(ours), fmt),
                    f"{statistics.fmean(ratios):.2f}x",
                    f"{min(ratios):.2f}-{max(ratios):.2f}",
                ]
            )
        if concurrency == config.concurrency:
            ratio = statistics.fmean(_round_ratios(pairs, lambda p: p.throughput))
            met = "MET" if ratio >= config.target_ratio else "NOT MET"
            verdict = (
                f"Target ours/echo throughput >= {config.target_ratio:.1f}x at "
                f"{concurrency} in flight: **{met}** ({ratio:.2f}x)."
            )
    summary_table = Table(
        ["metric", "echo", "ours", "ours/echo", "range over rounds"], summary_rows, align="lrrrr"
    )

    notes = [
        verdict,
        "echo and ours: all rounds pooled; ours/echo: mean of the ratios within each round "
        "(its two phases ran back to back).",
        f"Each phase: {config.warmup_s:g} s warm-up then {config.measure_s:g} s measured at "
        f"{config.concurrency} in flight ({config.single_warmup_s:g} s + "
        f"{config.single_measure_s:g} s at 1 in flight), one grpc.aio channel, order echo, ours "
        f"per round; each server in its own process. Response {EXPECTED.ByteSize()} bytes from "
        "both. CPU columns: share of one core over the measured window (server: all its "
        "threads; client: the load generator).",
    ]
    if client_saturated:
        notes.append(
            "The load generator used a full core against echo, so echo's figure is partly "
            "bounded by the client: the real ours/echo ratio is lower than shown; "
            "compare server CPU us/call."
        )
    cache = (
        f"token cache {config.auth_cache_seconds:g} s"
        if config.auth_cache_seconds > 0
        else "no token cache: a database lookup on every call"
    )
    return Report(
        name="rpc" if config.auth_cache_seconds > 0 else "rpc-nocache",
        title=f"authenticated GetCallerIdentity (design server, SQLite, {cache}) vs bare "
        "grpc.aio echo",
        tables=[summary_table, phase_table],
        notes=notes,
    )


def run(config: RpcConfig | None = None) -> Report:
    """Sets up a database and both servers, measures, and removes everything again."""
    config = config or RpcConfig()
    with ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="cofab-bench-rpc-"))
        url = f"sqlite:///{Path(tmp) / 'cofab.db'}"
        token = prepare_database(url, Path(tmp))
        env = {
            "COFAB_DATABASE_URL": url,
            "COFAB_STATE_DIR": tmp,
            "COFAB_AUTH_CACHE_SECONDS": str(config.auth_cache_seconds),
        }
        # Echo first in every round: the order is part of the interleaving, keep it fixed.
        servers = [stack.enter_context(server_process(s, env)) for s in (ECHO, OURS)]
        phases = asyncio.run(_measure(config, servers, token))
    return _report(config, phases)


BENCHMARK = Benchmark(
    name="rpc",
    summary="authenticated unary RPC on the design server vs a bare grpc.aio echo server",
    run=run,
)
UNCACHED_BENCHMARK = Benchmark(
    name="rpc-nocache",
    summary="the same with the token cache off: a token lookup in the database on every call",
    run=lambda: run(RpcConfig(auth_cache_seconds=0)),
)
