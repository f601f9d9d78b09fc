"""Start, health-check and stop the real services cofab needs, as local child processes.

Used by `python -m deploy.local up` (the foreground local stack) and `infra` (services for a test
run), and by tests that need to stop or crash a service on purpose. Nothing here downloads
anything: the Kafka jars, the Temporal CLI and PostgreSQL are put in place by `make install`, and
a missing piece is reported as a `StackError` that says so.
"""

from __future__ import annotations

import abc
import base64
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template

import grpc
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kafka import KafkaAdminClient
from kafka.errors import KafkaError
from psycopg import sql
from temporalio.api.workflowservice.v1 import (
    DescribeNamespaceRequest,
    DescribeNamespaceResponse,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCALHOST = "127.0.0.1"
INSTALL_HINT = "run `make install`"
LOG_TAIL_LINES = 30

_KAFKA_TEMPLATES = Path(__file__).resolve().parent / "kafka"
_POLL_INTERVAL = 0.2
# Reading a whole multi-megabyte broker log to show 30 lines would be wasteful.
_TAIL_READ_BYTES = 64 * 1024
# sun_path is 108 bytes on Linux; PostgreSQL refuses longer socket paths.
_MAX_UNIX_SOCKET_PATH = 100
_MIN_JAVA = 17
_TEMPORAL_HEALTH_NAMESPACE = "default"

HealthCheck = Callable[[], bool]


class StackError(Exception):
    """An expected failure of the local stack; the message says what went wrong and what to do."""


# --------------------------------------------------------------------------------------------
# Small helpers


def tcp_port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Return True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def describe_returncode(code: int | None) -> str:
    """Popen-style return code in words: "exit code 1", "killed by SIGKILL"."""
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def check_port_free(port: int, what: str, env_var: str | None = None) -> None:
    """Raise StackError when `port` on 127.0.0.1 is taken; `env_var` names the override to hint."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR like the servers themselves, so TIME_WAIT leftovers of a server we just
        # stopped do not count as "in use" while a real listener still does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOCALHOST, port))
        except OSError as exc:
            hint = f"set {env_var} to another port" if env_var else "stop what listens there"
            raise StackError(
                f"port {port} ({what}) is already in use on {LOCALHOST}; {hint}"
            ) from exc


def free_ports(count: int) -> list[int]:
    """Return `count` distinct TCP ports on 127.0.0.1 that are free right now."""
    sockets: list[socket.socket] = []
    try:
        # Hold every socket open until all are bound, so the kernel cannot hand out one port twice.
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((LOCALHOST, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def grpc_health_serving(address: str, service: str = "", timeout: float = 1.0) -> bool:
    """Return True when the standard gRPC health service at `address` reports SERVING."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def require_java() -> str:
    """Return the path of a Java 17+ runtime (JAVA_HOME first, then PATH) or raise StackError."""
    message = (
        f"Java {_MIN_JAVA}+ is needed to run Kafka; install OpenJDK 17 "
        "(apt-get install openjdk-17-jre-headless)"
    )
    java = _find_java()
    if java is None:
        raise StackError(message)
    version = _java_major_version(java)
    if version is None or version < _MIN_JAVA:
        found = "an unknown version" if version is None else f"Java {version}"
        raise StackError(f"{message}; {java} is {found}")
    return java


def _find_java() -> str | None:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and os.access(Path(java_home, "bin", "java"), os.X_OK):
        return str(Path(java_home, "bin", "java"))
    return shutil.which("java")


def _java_major_version(java: str) -> int | None:
    try:
        result = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    # `java -version` writes to stderr: `openjdk version "17.0.15" ...` or `"1.8.0_392"` for 8.
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr)
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def default_kafka_libs() -> Path:
    """Directory with the Kafka broker jars: $COFAB_KAFKA_LIBS or <repo>/.cache/kafka-libs."""
    override = os.environ.get("COFAB_KAFKA_LIBS")
    return Path(override) if override else REPO_ROOT / ".cache" / "kafka-libs"


def require_kafka_libs(libs_dir: Path) -> None:
    """Raise StackError unless `libs_dir` holds the Kafka broker jars."""
    if not any(libs_dir.glob("kafka_2.13-*.jar")):
        raise StackError(
            f"Kafka broker jars not found in {libs_dir}; {INSTALL_HINT} "
            "(it copies them with Maven from deploy/local/kafka/pom.xml)"
        )


def require_temporal_bin(temporal_bin: Path) -> None:
    """Raise StackError unless the Temporal CLI is installed at `temporal_bin`."""
    if not os.access(temporal_bin, os.X_OK):
        raise StackError(f"Temporal CLI not found at {temporal_bin}; {INSTALL_HINT}")


def default_temporal_bin() -> Path:
    """The `temporal` CLI installed next to this interpreter (the temporal-bin package)."""
    # Not resolved: the venv's python is a symlink to the base interpreter elsewhere.
    return Path(sys.executable).parent / "temporal"


def find_postgres_bin() -> Path:
    """Newest /usr/lib/postgresql/<version>/bin holding `postgres` ($COFAB_PG_BIN overrides)."""
    override = os.environ.get("COFAB_PG_BIN")
    candidates = [Path(override)] if override else _debian_postgres_bins()
    for candidate in candidates:
        if (candidate / "postgres").is_file() and (candidate / "initdb").is_file():
            return candidate
    where = override or "/usr/lib/postgresql/*/bin"
    raise StackError(f"PostgreSQL server binaries not found in {where}; {INSTALL_HINT}")


def _debian_postgres_bins() -> list[Path]:
    def version(path: Path) -> tuple[int, ...]:
        # Directory names are versions like "15" or "9.6"; compare them as numbers.
        parts = path.parent.name.split(".")
        return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else (-1,)

    return sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)


def _read_tail(path: Path, start: int, lines: int) -> str:
    try:
        with path.open("rb") as log:
            size = log.seek(0, os.SEEK_END)
            log.seek(max(start, size - _TAIL_READ_BYTES))
            data = log.read()
    except OSError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


# --------------------------------------------------------------------------------------------
# One child process


@dataclass(frozen=True)
class RunAs:
    """Unprivileged identity for a child started by root (PostgreSQL refuses to run as root)."""

    uid: int
    gid: int


class ManagedProcess:
    """One child process in its own session, with a log file, a health check and a clean stop.

    The child gets its own session (and so its own process group) so that a Ctrl-C in the
    terminal reaches only us; we then stop children in order instead of all dying at once.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        health_check: HealthCheck | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
        run_as: RunAs | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._health_check = health_check
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        self._stop_signal = stop_signal
        self._run_as = run_as
        self._popen: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self._started_at = 0.0

    @property
    def pid(self) -> int | None:
        """Process id of the current (or last) child, None before the first start."""
        return self._popen.pid if self._popen is not None else None

    @property
    def is_running(self) -> bool:
        """True while the child has been started and has not exited."""
        return self._popen is not None and self.returncode is None

    @property
    def returncode(self) -> int | None:
        """Exit status like Popen.returncode (negative = killed by that signal); None if running.

        Looks without reaping, so that stop() can still clean up the child's process group while
        its pid is reserved (see _sweep_group).
        """
        popen = self._popen
        if popen is None or popen.returncode is not None:
            return popen.returncode if popen is not None else None
        try:
            info = os.waitid(os.P_PID, popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return popen.poll()  # Reaped behind our back (e.g. an os.wait() elsewhere).
        if info is None:
            return None
        return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status

    def start(self) -> None:
        """Start the child, appending its stdout and stderr to the log file."""
        if self.is_running:
            raise StackError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._log_offset = log.tell()
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"--- {stamp} deploy.local starts: {shlex.join(self.argv)}\n".encode())
            log.flush()
            self._popen = self._spawn(log.fileno())
        self._started_at = time.monotonic()

    def _spawn(self, log_fd: int) -> subprocess.Popen[bytes]:
        run_as = self._run_as
        try:
            return subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=subprocess.STDOUT,
                env=self._env,
                cwd=self._cwd,
                start_new_session=True,
                user=run_as.uid if run_as else None,
                group=run_as.gid if run_as else None,
                # Drop root's supplementary groups too, not only uid and gid.
                extra_groups=[] if run_as else None,
            )
        except OSError as exc:
            raise StackError(f"cannot start {self.name} ({self.argv[0]}): {exc}") from exc

    def wait_ready(self, timeout: float) -> float:
        """Poll the health check until it passes; return seconds since start().

        Raises StackError, with the end of the child's log, if the child exits first or the
        timeout passes. Without a health check the child counts as ready once started.
        """
        deadline = time.monotonic() + timeout
        while True:
            code = self.returncode
            if code is not None:
                what = f"exited ({describe_returncode(code)}) before it was ready"
                raise StackError(self.failure_message(what))
            if self._health_check is None or self._health_check():
                # The health check can be answered by someone else's server on the same port;
                # our child then fails to bind and exits, so look once more.
                if self.returncode is None:
                    return time.monotonic() - self._started_at
                continue
            if time.monotonic() >= deadline:
                raise StackError(self.failure_message(f"was not ready within {timeout:.0f} s"))
            time.sleep(_POLL_INTERVAL)

    def failure_message(self, what: str) -> str:
        """`<name> <what>` followed by the end of this run's log, for error messages."""
        tail = self.log_tail()
        shown = f"; last lines of {self.log_path}:\n{tail}" if tail else f"; see {self.log_path}"
        return f"{self.name} {what}{shown}"

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """Last `lines` lines this run of the child wrote to its log."""
        return _read_tail(self.log_path, self._log_offset, lines)

    def stop(self, grace: float = 10.0) -> None:
        """Send the stop signal to the child's process group, wait `grace` s, then SIGKILL it."""
        popen = self._popen
        if popen is None or popen.returncode is not None:
            return
        if self.returncode is None:
            self._signal_group(self._stop_signal)
            if not self.wait_exit(grace):
                self._signal_group(signal.SIGKILL)
        self._sweep_group()

    def kill(self) -> None:
        """SIGKILL the child's whole process group at once, as a crash would, and reap it."""
        popen = self._popen
        if popen is None or popen.returncode is not None:
            return
        self._signal_group(signal.SIGKILL)
        self._sweep_group()

    def wait_exit(self, timeout: float) -> bool:
        """Wait up to `timeout` s for the child to exit (without reaping it); True if it did."""
        deadline = time.monotonic() + timeout
        while self.returncode is None:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def _sweep_group(self) -> None:
        """Kill what the child left in its process group, then reap the child.

        Done before reaping on purpose: until the child is reaped its pid (which is also the
        group id) cannot be reused, so the signal cannot hit an unrelated process group.
        """
        assert self._popen is not None
        self.wait_exit(float("inf"))
        self._signal_group(signal.SIGKILL)
        self._popen.wait()

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self._popen is not None
        try:
            os.killpg(self._popen.pid, sig)
        except ProcessLookupError:
            pass  # Group already empty.


# --------------------------------------------------------------------------------------------
# Services: a ManagedProcess plus what that server needs before and after it starts


class Service(abc.ABC):
    """Base for one server run as a child process; subclasses say how to prepare and run it."""

    name = "service"
    default_timeout = 60.0
    stop_grace = 10.0

    def __init__(self) -> None:
        self._process: ManagedProcess | None = None

    @property
    @abc.abstractmethod
    def endpoint(self) -> str:
        """Where clients reach this service (for messages)."""

    @property
    @abc.abstractmethod
    def log_path(self) -> Path:
        """The log file the child writes to."""

    @property
    def process(self) -> ManagedProcess | None:
        """The child of the current (or last) run, None before the first launch."""
        return self._process

    @property
    def is_running(self) -> bool:
        """True while the child runs."""
        return self._process is not None and self._process.is_running

    def launch(self) -> None:
        """Prepare (config files, first-time init) and start the child without waiting."""
        if self.is_running:
            raise StackError(f"{self.name} is already running")
        self._prepare()
        self._process = self._build_process()
        self._process.start()

    def wait_ready(self, timeout: float | None = None) -> float:
        """Wait until healthy; return seconds since launch. Stops the child if it never is."""
        assert self._process is not None, "launch() first"
        try:
            return self._process.wait_ready(timeout or self.default_timeout)
        except BaseException:
            # A half-started server must not outlive a failed (or interrupted) start.
            self._process.stop(self.stop_grace)
            raise

    def start(self, timeout: float | None = None) -> float:
        """Launch and wait until healthy; return seconds it took."""
        self.launch()
        return self.wait_ready(timeout)

    def stop(self) -> None:
        """Stop cleanly (SIGKILL after `stop_grace` seconds); no-op if not running."""
        if self._process is not None:
            self._process.stop(self.stop_grace)

    def kill(self) -> None:
        """SIGKILL the service, simulating a crash."""
        if self._process is not None:
            self._process.kill()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """Last lines of the current run's log."""
        return self._process.log_tail(lines) if self._process is not None else ""

    @abc.abstractmethod
    def _prepare(self) -> None:
        """Everything needed before the process can start (config files, first-time init)."""

    @abc.abstractmethod
    def _build_process(self) -> ManagedProcess:
        """The child process to run."""


class KafkaBroker(Service):
    """A single-node Apache Kafka broker (KRaft, broker and controller in one JVM).

    Storage is formatted on the first start only, so topics and messages survive stop()/start().
    """

    name = "kafka"
    default_timeout = 90.0
    # A controlled shutdown takes a few seconds; SIGKILL would force log recovery next start.
    stop_grace = 30.0

    def __init__(
        self,
        state_dir: Path,
        port: int = 9092,
        controller_port: int = 9093,
        libs_dir: Path | None = None,
        *,
        log_path: Path | None = None,
        heap: str = "512m",
    ) -> None:
        super().__init__()
        self.state_dir = state_dir.absolute()
        self.port = port
        self.controller_port = controller_port
        self.libs_dir = (libs_dir or default_kafka_libs()).absolute()
        self.heap = heap
        self._log_path = log_path or self.state_dir / "kafka.log"
        self.data_dir = self.state_dir / "data"
        self.properties_path = self.state_dir / "server.properties"
        self.log4j_path = self.state_dir / "log4j2.xml"
        self._java = ""

    @property
    def bootstrap_servers(self) -> str:
        """Bootstrap address for clients: 127.0.0.1:<port>."""
        return f"{LOCALHOST}:{self.port}"

    @property
    def endpoint(self) -> str:
        """Same as bootstrap_servers."""
        return self.bootstrap_servers

    @property
    def log_path(self) -> Path:
        """The broker's log file."""
        return self._log_path

    def _prepare(self) -> None:
        self._java = require_java()
        require_kafka_libs(self.libs_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        if not (self.data_dir / "meta.properties").exists():
            self._format_storage()

    def _write_config(self) -> None:
        template = Template((_KAFKA_TEMPLATES / "server.properties.in").read_text())
        properties = template.substitute(
            port=self.port, controller_port=self.controller_port, data_dir=self.data_dir
        )
        self.properties_path.write_text(properties)
        shutil.copyfile(_KAFKA_TEMPLATES / "log4j2.xml", self.log4j_path)

    def _java_argv(self, main_class: str, *args: str) -> list[str]:
        return [
            self._java,
            f"-Xmx{self.heap}",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.log4j_path}",
            "-cp",
            f"{self.libs_dir}/*",
            main_class,
            *args,
        ]

    def _format_storage(self) -> None:
        # The cluster id format Kafka expects: 16 random bytes, URL-safe base64 without padding.
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        argv = self._java_argv(
            # "--cluster-id=ID", not "-t ID": a random id may start with "-", which the
            # tool's argument parser would then take for an option.
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={cluster_id}",
            "-c",
            str(self.properties_path),
        )
        run_to_completion("kafka storage format", argv, self.log_path, cwd=self.state_dir)

    def _build_process(self) -> ManagedProcess:
        return ManagedProcess(
            self.name,
            self._java_argv("kafka.Kafka", str(self.properties_path)),
            log_path=self.log_path,
            health_check=self._healthy,
            cwd=self.state_dir,
        )

    def _healthy(self) -> bool:
        # Cheap TCP probe first: a KafkaAdminClient against a closed port waits for its timeouts.
        if not tcp_port_open(LOCALHOST, self.port):
            return False
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap_servers,
                client_id="cofab-deploy-health",
                bootstrap_timeout_ms=3000,
                request_timeout_ms=3000,
            )
        except KafkaError:
            return False
        try:
            admin.list_topics()
            return True
        except KafkaError:
            return False
        finally:
            admin.close()


class TemporalDevServer(Service):
    """`temporal server start-dev` with its SQLite file in state_dir: workflows survive restarts."""

    name = "temporal"
    default_timeout = 60.0

    def __init__(
        self,
        state_dir: Path,
        port: int = 7233,
        ui_port: int | None = None,
        temporal_bin: Path | None = None,
        *,
        log_path: Path | None = None,
    ) -> None:
        super().__init__()
        self.state_dir = state_dir.absolute()
        self.port = port
        self.ui_port = ui_port
        self.temporal_bin = temporal_bin or default_temporal_bin()
        self._log_path = log_path or self.state_dir / "temporal.log"

    @property
    def address(self) -> str:
        """Frontend gRPC address: 127.0.0.1:<port>."""
        return f"{LOCALHOST}:{self.port}"

    @property
    def ui_url(self) -> str | None:
        """Web UI URL, None when started headless."""
        return f"http://{LOCALHOST}:{self.ui_port}" if self.ui_port else None

    @property
    def endpoint(self) -> str:
        """Same as address."""
        return self.address

    @property
    def log_path(self) -> Path:
        """The dev server's log file."""
        return self._log_path

    def _prepare(self) -> None:
        require_temporal_bin(self.temporal_bin)
        self.state_dir.mkdir(parents=True, exist_ok=True)

    def _build_process(self) -> ManagedProcess:
        argv = [str(self.temporal_bin), "server", "start-dev"]
        # Without --ip the server listens on "localhost", which may not be 127.0.0.1.
        argv += ["--ip", LOCALHOST, "--port", str(self.port)]
        argv += ["--db-filename", str(self.state_dir / "temporal.db")]
        if self.ui_port:
            # No internet here: the UI's news feed would only fail.
            argv += ["--ui-port", str(self.ui_port), "--ui-disable-news-fetch"]
        else:
            argv.append("--headless")
        return ManagedProcess(
            self.name,
            argv,
            log_path=self.log_path,
            health_check=self._healthy,
            cwd=self.state_dir,
        )

    def _healthy(self) -> bool:
        # The frontend can answer before the dev server has created the "default" namespace;
        # workers connecting in that gap fail, so readiness is "that namespace is describable".
        if not tcp_port_open(LOCALHOST, self.port):
            return False
        with grpc.insecure_channel(self.address) as channel:
            describe = channel.unary_unary(
                "/temporal.api.workflowservice.v1.WorkflowService/DescribeNamespace",
                request_serializer=DescribeNamespaceRequest.SerializeToString,
                response_deserializer=DescribeNamespaceResponse.FromString,
            )
            try:
                describe(DescribeNamespaceRequest(namespace=_TEMPORAL_HEALTH_NAMESPACE), timeout=2)
            except grpc.RpcError:
                return False
        return True


class PostgresServer(Service):
    """A PostgreSQL server on 127.0.0.1 with trust auth for the `postgres` superuser.

    initdb runs on the first start only. When we are root the server runs as the `postgres` OS
    user, which owns the data directory, because PostgreSQL refuses to run as root.
    """

    name = "postgres"
    default_timeout = 60.0
    stop_grace = 30.0

    def __init__(
        self,
        data_dir: Path,
        port: int = 5432,
        *,
        log_path: Path | None = None,
        durable: bool = True,
        bin_dir: Path | None = None,
    ) -> None:
        super().__init__()
        self.data_dir = data_dir.absolute()
        self.port = port
        # Throwaway test databases skip fsync: much faster, and a lost database costs nothing.
        self.durable = durable
        self._bin_dir = bin_dir
        self._log_path = log_path or self.data_dir.with_name(self.data_dir.name + ".log")
        self.socket_dir = self.data_dir.with_name(self.data_dir.name + "-socket")
        self._run_as: RunAs | None = None

    @property
    def base_url(self) -> str:
        """SQLAlchemy URL of the `postgres` maintenance database (to create other databases)."""
        return self.url_for("postgres")

    @property
    def endpoint(self) -> str:
        """host:port of the server."""
        return f"{LOCALHOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        """The server's log file."""
        return self._log_path

    def url_for(self, database: str) -> str:
        """SQLAlchemy URL (psycopg 3 driver) for `database` on this server."""
        return f"postgresql+psycopg://postgres@{LOCALHOST}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create database `name` unless it exists; return its SQLAlchemy URL."""
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise StackError(f"database name {name!r} must be a plain identifier")
        with psycopg.connect(self._conninfo("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if exists.fetchone() is None:
                try:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                except psycopg.errors.DuplicateDatabase:
                    pass  # Created concurrently by someone else: fine, that is the goal.
        return self.url_for(name)

    def _conninfo(self, database: str) -> str:
        return (
            f"host={LOCALHOST} port={self.port} user=postgres dbname={database} connect_timeout=3"
        )

    def _prepare(self) -> None:
        bin_dir = self._bin_dir or find_postgres_bin()
        self._bin_dir = bin_dir
        self._run_as = _postgres_identity()
        self._make_owned_dir(self.data_dir, mode=0o700)
        self._make_owned_dir(self.socket_dir, mode=0o700)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(bin_dir)

    def _make_owned_dir(self, path: Path, mode: int) -> None:
        path.mkdir(parents=True, exist_ok=True)
        if self._run_as is not None:
            _check_traversable(path.parent, self._run_as)
            os.chown(path, self._run_as.uid, self._run_as.gid)
        path.chmod(mode)

    def _initdb(self, bin_dir: Path) -> None:
        argv = [str(bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres"]
        argv += ["--auth=trust", "--encoding=UTF8", "--locale=C", "--no-instructions"]
        if not self.durable:
            argv.append("--no-sync")
        run_to_completion(
            "postgres initdb", argv, self.log_path, cwd=self.data_dir, run_as=self._run_as
        )

    def _socket_setting(self) -> str:
        socket_path = self.socket_dir / f".s.PGSQL.{self.port}"
        # An empty setting means TCP only; better than refusing to start over a long state path.
        return str(self.socket_dir) if len(str(socket_path)) <= _MAX_UNIX_SOCKET_PATH else ""

    def _build_process(self) -> ManagedProcess:
        assert self._bin_dir is not None
        settings = {
            "listen_addresses": LOCALHOST,
            "port": str(self.port),
            "unix_socket_directories": self._socket_setting(),
        }
        if not self.durable:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        argv = [str(self._bin_dir / "postgres"), "-D", str(self.data_dir)]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        return ManagedProcess(
            self.name,
            argv,
            log_path=self.log_path,
            health_check=self._healthy,
            cwd=self.data_dir,
            # SIGTERM is a "smart" shutdown that waits for every client to disconnect;
            # SIGINT is the "fast" one: roll back sessions, checkpoint, exit.
            stop_signal=signal.SIGINT,
            run_as=self._run_as,
        )

    def _healthy(self) -> bool:
        if not tcp_port_open(LOCALHOST, self.port):
            return False
        try:
            with psycopg.connect(self._conninfo("postgres")) as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError:
            return False  # Includes "the database system is starting up".
        return True


def _postgres_identity() -> RunAs | None:
    """Whom to run PostgreSQL as: the `postgres` OS user when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        raise StackError(
            f"running as root, PostgreSQL needs the `postgres` OS user, which is missing; "
            f"{INSTALL_HINT} (apt-get install postgresql)"
        ) from None
    return RunAs(uid=entry.pw_uid, gid=entry.pw_gid)


def _check_traversable(directory: Path, run_as: RunAs) -> None:
    """Raise StackError if `run_as` cannot reach `directory` (e.g. a 0700 temp dir of root's)."""
    for path in [directory, *directory.parents]:
        info = path.stat()
        if info.st_uid == run_as.uid:
            allowed = bool(info.st_mode & 0o100)
        elif info.st_gid == run_as.gid:
            allowed = bool(info.st_mode & 0o010)
        else:
            allowed = bool(info.st_mode & 0o001)
        if not allowed:
            raise StackError(
                f"the postgres OS user cannot enter {path} (mode {info.st_mode & 0o777:o}); "
                "put the PostgreSQL data directory somewhere it can reach"
            )


def run_to_completion(
    name: str,
    argv: Sequence[str],
    log_path: Path,
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    run_as: RunAs | None = None,
    timeout: float = 300.0,
) -> float:
    """Run a one-off setup command, output appended to log_path; return seconds it took.

    Raises StackError, with the end of the log, when it fails or overruns `timeout`.
    """
    process = ManagedProcess(name, argv, log_path=log_path, cwd=cwd, env=env, run_as=run_as)
    started = time.monotonic()
    process.start()
    try:
        finished = process.wait_exit(timeout)
    finally:
        # A no-op when it finished; after a timeout or Ctrl-C it must not be left behind.
        process.stop()
    if not finished:
        raise StackError(process.failure_message(f"did not finish within {timeout:.0f} s"))
    if process.returncode != 0:
        what = f"failed ({describe_returncode(process.returncode)})"
        raise StackError(process.failure_message(what))
    return time.monotonic() - started


class PythonService(Service):
    """A cofab Python process (`python -m <module>`), e.g. a gRPC service or a worker.

    Readiness: with `grpc_address`, the standard gRPC health service answers SERVING for the
    server as a whole (service ""). Otherwise, with `ready_file`, the child creates the file named
    in $COFAB_READY_FILE once it is ready. With neither, started counts as ready.
    """

    default_timeout = 60.0

    def __init__(
        self,
        name: str,
        module: str,
        env: Mapping[str, str],
        state_dir: Path,
        ready_file: bool = True,
        *,
        grpc_address: str | None = None,
        log_path: Path | None = None,
        cwd: Path | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.module = module
        self.env = dict(env)
        self.state_dir = state_dir.absolute()
        self.grpc_address = grpc_address
        self.ready_file = (
            self.state_dir / "run" / f"{name}.ready" if ready_file and not grpc_address else None
        )
        self._log_path = log_path or self.state_dir / "logs" / f"{name}.log"
        self.cwd = cwd or REPO_ROOT

    @property
    def endpoint(self) -> str:
        """The gRPC address, or the module for processes that serve nothing."""
        return self.grpc_address or f"python -m {self.module}"

    @property
    def log_path(self) -> Path:
        """The process's log file."""
        return self._log_path

    def _prepare(self) -> None:
        if self.ready_file is not None:
            self.ready_file.parent.mkdir(parents=True, exist_ok=True)
            # A file left by an earlier run would make this one look ready at once.
            self.ready_file.unlink(missing_ok=True)

    def _build_process(self) -> ManagedProcess:
        env = dict(self.env)
        # Unbuffered so the log shows the last words of a child that crashes.
        env["PYTHONUNBUFFERED"] = "1"
        if self.ready_file is not None:
            env["COFAB_READY_FILE"] = str(self.ready_file)
        return ManagedProcess(
            self.name,
            [sys.executable, "-m", self.module],
            log_path=self.log_path,
            health_check=self._make_health_check(),
            env=env,
            cwd=self.cwd,
        )

    def _make_health_check(self) -> HealthCheck | None:
        grpc_address = self.grpc_address
        if grpc_address is not None:
            host, port = _split_address(grpc_address)
            return lambda: tcp_port_open(host, port) and grpc_health_serving(grpc_address)
        ready_file = self.ready_file
        if ready_file is not None:
            return ready_file.exists
        return None
