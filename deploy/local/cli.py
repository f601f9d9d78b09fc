"""Command line: `python -m deploy.local up | demo | infra -- <command>`.

`up` runs the whole local stack in the foreground (`make up`); `demo` runs it, plays the
end-to-end story with the `cofab` CLI and stops it (`make demo`); `infra` starts Kafka,
Temporal and/or PostgreSQL on free ports around one command, typically pytest (`make test`).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from deploy.local.processes import (
    LOCALHOST,
    REPO_ROOT,
    KafkaBroker,
    PostgresServer,
    PythonService,
    Service,
    StackError,
    TemporalDevServer,
    check_port_free,
    default_kafka_libs,
    default_temporal_bin,
    describe_returncode,
    find_postgres_bin,
    free_ports,
    require_java,
    require_kafka_libs,
    require_temporal_bin,
    run_to_completion,
)

CLI_MODULE = "clients.cli.main"
INFRA_ROOT = REPO_ROOT / ".cache" / "test-infra"
TEST_DATABASE = "cofab_test"
_SUPERVISE_INTERVAL = 0.5
_SETUP_TIMEOUT = 300.0


@dataclass(frozen=True)
class PortSetting:
    """A port of the local stack and the environment variable that overrides it."""

    env_var: str
    default: int
    what: str


@dataclass(frozen=True)
class SetupStep:
    """A one-off `cofab` CLI command run after Kafka and Temporal, before the Python processes."""

    name: str
    args: tuple[str, ...]


@dataclass(frozen=True)
class PythonProcess:
    """One cofab Python process of the local stack (`python -m <module>`)."""

    name: str
    module: str
    # env_var of the PortSetting it serves gRPC on (ready = gRPC health SERVING); None = it
    # signals readiness by creating the file named in $COFAB_READY_FILE.
    grpc_port: str | None = None


PORTS: tuple[PortSetting, ...] = (
    PortSetting("COFAB_KAFKA_PORT", 9092, "Kafka"),
    PortSetting("COFAB_KAFKA_CONTROLLER_PORT", 9093, "Kafka controller"),
    PortSetting("COFAB_TEMPORAL_PORT", 7233, "Temporal"),
    PortSetting("COFAB_TEMPORAL_UI_PORT", 8233, "Temporal UI"),
    PortSetting("COFAB_DESIGN_PORT", 50051, "design service"),
    PortSetting("COFAB_SUPPLY_PORT", 50052, "supply service"),
)

# Run in this order by `up` once Kafka and Temporal are healthy. "{token_file}" is replaced.
SETUP_STEPS: tuple[SetupStep, ...] = (
    SetupStep("migrate", ("admin", "migrate")),
    SetupStep(
        "service-account", ("admin", "ensure-service-account", "--token-file", "{token_file}")
    ),
)

# The cofab Python processes `up` runs after the setup steps, in start order (stopped in reverse).
PYTHON_PROCESSES: tuple[PythonProcess, ...] = (
    PythonProcess("design", "services.design", grpc_port="COFAB_DESIGN_PORT"),
    PythonProcess("supply", "services.supply", grpc_port="COFAB_SUPPLY_PORT"),
    PythonProcess("relay", "services.shared.relay"),
    PythonProcess("feed", "services.shared.feed"),
    PythonProcess("worker", "workflows.worker"),
    PythonProcess("bridge", "workflows.bridge"),
)


class Terminated(BaseException):
    """Raised by our SIGTERM handler; a BaseException so that no `except Exception` eats it."""


def say(message: str) -> None:
    """Progress output of the CLI (stdout)."""
    print(message, flush=True)


def complain(message: str) -> None:
    """Errors and `infra` progress (stderr, so the wrapped command's stdout stays its own)."""
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Starting and stopping a set of services


class Stack:
    """The services started so far, stopped in reverse order."""

    def __init__(self) -> None:
        self.services: list[Service] = []

    def launch(self, service: Service) -> None:
        """Launch without waiting; tracked first so that an interrupted launch is cleaned up."""
        self.services.append(service)
        service.launch()

    def first_dead(self) -> Service | None:
        """A service that was started and has exited since, if any."""
        return next((s for s in self.services if s.process and not s.is_running), None)

    def stop_all(self, on_stop: Callable[[Service], None] | None = None) -> None:
        """Stop every running service, last started first."""
        for service in reversed(self.services):
            if service.is_running:
                if on_stop is not None:
                    on_stop(service)
                service.stop()


@contextmanager
def stop_signals_raise() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt and SIGTERM Terminated, so `finally` stops the children.

    Set explicitly: a process started in the background by a non-interactive shell inherits an
    ignored SIGINT, and Ctrl-C must still stop the stack.
    """

    def terminated(signum: int, frame: FrameType | None) -> None:
        raise Terminated

    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    previous_term = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous_term)


@contextmanager
def signals_ignored() -> Iterator[None]:
    """Shield a shutdown from a second Ctrl-C, which would abort it and leave children behind."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _ready_line(service: Service, elapsed: float) -> str:
    return f"  {service.name:<16} healthy in {elapsed:5.1f} s   {service.endpoint}"


# --------------------------------------------------------------------------------------------
# up


@dataclass(frozen=True)
class UpConfig:
    """Settings of `up`, from the environment."""

    state_dir: Path
    database_url: str
    ports: Mapping[str, int]

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> UpConfig:
        """Read COFAB_STATE_DIR, COFAB_DATABASE_URL and the port variables (see PORTS)."""
        state_dir = Path(environ.get("COFAB_STATE_DIR") or REPO_ROOT / ".state").absolute()
        default_db = f"sqlite:///{state_dir / 'cofab.db'}"
        ports = {p.env_var: _port_from_env(environ, p) for p in PORTS}
        return cls(state_dir, environ.get("COFAB_DATABASE_URL") or default_db, ports)

    @property
    def logs_dir(self) -> Path:
        """Where every component's log goes."""
        return self.state_dir / "logs"

    @property
    def token_file(self) -> Path:
        """The platform service account's token, written by the service-account step."""
        return self.state_dir / "service-token"

    def address(self, env_var: str) -> str:
        """127.0.0.1:<the port set by env_var>."""
        return f"{LOCALHOST}:{self.ports[env_var]}"


def _port_from_env(environ: Mapping[str, str], setting: PortSetting) -> int:
    raw = environ.get(setting.env_var)
    if not raw:
        return setting.default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise StackError(f"{setting.env_var}={raw!r} is not a port number")
    return int(raw)


def service_env(config: UpConfig, environ: Mapping[str, str]) -> dict[str, str]:
    """Environment of the setup steps and Python processes: ours on top of `environ`."""
    design = config.address("COFAB_DESIGN_PORT")
    supply = config.address("COFAB_SUPPLY_PORT")
    return {
        **environ,
        "COFAB_STATE_DIR": str(config.state_dir),
        "COFAB_DATABASE_URL": config.database_url,
        "COFAB_KAFKA_BOOTSTRAP": config.address("COFAB_KAFKA_PORT"),
        "COFAB_TEMPORAL_ADDRESS": config.address("COFAB_TEMPORAL_PORT"),
        "COFAB_DESIGN_LISTEN": design,
        "COFAB_SUPPLY_LISTEN": supply,
        "COFAB_DESIGN_ADDRESS": design,
        "COFAB_SUPPLY_ADDRESS": supply,
        "COFAB_SERVICE_TOKEN_FILE": str(config.token_file),
    }


def _check_up_prerequisites(config: UpConfig) -> None:
    """Everything that can be checked before starting anything, so failures come first."""
    require_java()
    require_kafka_libs(default_kafka_libs())
    require_temporal_bin(default_temporal_bin())
    _check_modules([CLI_MODULE, *(p.module for p in PYTHON_PROCESSES)])
    _check_ports(config)


def _check_modules(modules: Sequence[str]) -> None:
    missing = [m for m in modules if not _module_exists(m)]
    if missing:
        raise StackError(f"cannot find the Python module(s) {', '.join(missing)}")


def _module_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False  # A parent package is missing.


def _check_ports(config: UpConfig) -> None:
    seen: dict[int, str] = {}
    for setting in PORTS:
        port = config.ports[setting.env_var]
        if port in seen:
            raise StackError(f"{setting.env_var} and {seen[port]} are both set to port {port}")
        seen[port] = setting.env_var
        check_port_free(port, setting.what, setting.env_var)


def run_up(environ: Mapping[str, str]) -> int:
    """Run the local stack in the foreground until Ctrl-C, SIGTERM or a crash; return exit code."""
    config = UpConfig.from_env(environ)
    _check_up_prerequisites(config)
    config.logs_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack()
    with stop_signals_raise():
        try:
            start_up_stack(stack, config, environ)
            _print_summary(stack, config)
            return _supervise(stack)
        except (KeyboardInterrupt, Terminated):
            say("\nstopping cofab")
            return 0
        except StackError as exc:
            complain(f"error: {exc}")
            return 1
        finally:
            with signals_ignored():
                stack.stop_all(lambda service: say(f"  stopping {service.name}"))
            say(f"cofab stopped; data stays in {config.state_dir}")


def start_up_stack(stack: Stack, config: UpConfig, environ: Mapping[str, str]) -> None:
    say(f"starting cofab (state in {config.state_dir})")
    logs = config.logs_dir
    _start(stack, _up_kafka(config))
    temporal = TemporalDevServer(
        config.state_dir / "temporal",
        port=config.ports["COFAB_TEMPORAL_PORT"],
        ui_port=config.ports["COFAB_TEMPORAL_UI_PORT"],
        log_path=logs / "temporal.log",
    )
    _start(stack, temporal)
    env = service_env(config, environ)
    for step in SETUP_STEPS:
        _run_setup_step(step, config, env)
    for spec in PYTHON_PROCESSES:
        _start(stack, _python_service(spec, config, env))


def _start(stack: Stack, service: Service) -> None:
    stack.launch(service)
    say(_ready_line(service, service.wait_ready()))


def _up_kafka(config: UpConfig) -> KafkaBroker:
    return KafkaBroker(
        config.state_dir / "kafka",
        port=config.ports["COFAB_KAFKA_PORT"],
        controller_port=config.ports["COFAB_KAFKA_CONTROLLER_PORT"],
        log_path=config.logs_dir / "kafka.log",
    )


def _run_setup_step(step: SetupStep, config: UpConfig, env: Mapping[str, str]) -> None:
    args = [arg.format(token_file=config.token_file) for arg in step.args]
    elapsed = run_to_completion(
        step.name,
        [sys.executable, "-m", CLI_MODULE, *args],
        config.logs_dir / f"{step.name}.log",
        cwd=REPO_ROOT,
        env=env,
        timeout=_SETUP_TIMEOUT,
    )
    say(f"  {step.name:<16} done in    {elapsed:5.1f} s   cofab {' '.join(args)}")


def _python_service(spec: PythonProcess, config: UpConfig, env: Mapping[str, str]) -> Service:
    return PythonService(
        spec.name,
        spec.module,
        env,
        config.state_dir,
        grpc_address=config.address(spec.grpc_port) if spec.grpc_port else None,
        log_path=config.logs_dir / f"{spec.name}.log",
    )


def _print_summary(stack: Stack, config: UpConfig) -> None:
    ui_port = config.ports["COFAB_TEMPORAL_UI_PORT"]
    lines = [
        "",
        "cofab is up.",
        f"  design (gRPC)  {config.address('COFAB_DESIGN_PORT')}",
        f"  supply (gRPC)  {config.address('COFAB_SUPPLY_PORT')}",
        f"  Kafka          {config.address('COFAB_KAFKA_PORT')}",
        f"  Temporal       {config.address('COFAB_TEMPORAL_PORT')}",
        f"  Temporal UI    http://{LOCALHOST}:{ui_port}",
        f"  logs           {config.logs_dir}/",
        "",
        "Get a token, in another shell (with .venv/bin on PATH):",
        f"  export COFAB_STATE_DIR={config.state_dir}"
        f" COFAB_DESIGN_ADDRESS={config.address('COFAB_DESIGN_PORT')}"
        f" COFAB_SUPPLY_ADDRESS={config.address('COFAB_SUPPLY_PORT')}",
        '  cofab admin create-organization acme --display-name "ACME"',
        "  cofab admin create-user acme alice --admin",
        "  cofab admin create-token acme alice",
        "  export COFAB_TOKEN=<the token printed by create-token>",
        "  cofab whoami",
        "",
        "Ctrl-C stops everything; data stays in the state directory.",
    ]
    say("\n".join(lines))


def _supervise(stack: Stack) -> int:
    """Wait until a child dies (report it, return 1) or a signal interrupts us."""
    while True:
        dead = stack.first_dead()
        if dead is not None:
            code = dead.process.returncode if dead.process else None
            complain(
                f"\nerror: {dead.name} exited unexpectedly ({describe_returncode(code)}); "
                f"last lines of {dead.log_path}:\n{dead.log_tail()}"
            )
            return 1
        time.sleep(_SUPERVISE_INTERVAL)


# --------------------------------------------------------------------------------------------
# infra


@dataclass(frozen=True)
class InfraChoice:
    """Which services `infra` starts."""

    kafka: bool
    temporal: bool
    postgres: bool


def run_infra(choice: InfraChoice, command: Sequence[str], environ: Mapping[str, str]) -> int:
    """Start the chosen services on free ports, run `command`, stop them; return its exit code."""
    if not command:
        raise StackError("infra needs a command to run after `--`")
    _check_infra_prerequisites(choice)
    root = _make_infra_dir()
    env = {**environ, "COFAB_TEST_KAFKA_LIBS": str(default_kafka_libs())}
    stack = Stack()
    code = 1
    with stop_signals_raise():
        try:
            env |= _start_infra(stack, choice, root)
            code = _run_command(command, env)
        except KeyboardInterrupt:
            code = 128 + signal.SIGINT
        except Terminated:
            code = 128 + signal.SIGTERM
        except StackError as exc:
            complain(f"infra: error: {exc}")
        finally:
            with signals_ignored():
                stack.stop_all()
            _remove_infra_dir(root, keep=code != 0)
    return code


def _check_infra_prerequisites(choice: InfraChoice) -> None:
    """Fail before starting anything rather than after a slow service has started."""
    if choice.kafka:
        require_java()
        require_kafka_libs(default_kafka_libs())
    if choice.temporal:
        require_temporal_bin(default_temporal_bin())
    if choice.postgres:
        find_postgres_bin()


def _make_infra_dir() -> Path:
    INFRA_ROOT.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="run-", dir=INFRA_ROOT))
    # mkdtemp makes it 0700, which the postgres OS user (we may be root) cannot enter.
    for path in (INFRA_ROOT, root):
        path.chmod(0o755)
    return root


def _postgres_dir(root: Path) -> Path:
    """PostgreSQL's data directory. As root we run PostgreSQL as the `postgres` OS user, which
    cannot enter a checkout under a private directory such as /root; the system temp dir it can,
    so the data lives there (linked from the run directory) and goes away with the run."""
    if os.geteuid() != 0:
        return root / "postgres"
    outside = Path(tempfile.mkdtemp(prefix="cofab-test-postgres-"))
    outside.chmod(0o755)
    (root / "postgres").symlink_to(outside, target_is_directory=True)
    return outside / "data"


def _remove_infra_dir(root: Path, keep: bool) -> None:
    link = root / "postgres"
    if link.is_symlink():
        shutil.rmtree(link.resolve(), ignore_errors=True)
    if keep:
        complain(f"infra: kept service state and logs in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


def _start_infra(stack: Stack, choice: InfraChoice, root: Path) -> dict[str, str]:
    """Start the chosen services side by side; return the COFAB_TEST_* variables for them."""
    kafka_port, controller_port, temporal_port, postgres_port = free_ports(4)
    logs = root / "logs"
    kafka = KafkaBroker(root / "kafka", kafka_port, controller_port, log_path=logs / "kafka.log")
    temporal = TemporalDevServer(root / "temporal", temporal_port, log_path=logs / "temporal.log")
    postgres = PostgresServer(
        _postgres_dir(root), postgres_port, log_path=logs / "postgres.log", durable=False
    )
    chosen = [
        s
        for s, on in (
            (kafka, choice.kafka),
            (temporal, choice.temporal),
            (postgres, choice.postgres),
        )
        if on
    ]
    # Launch all, then wait for all: the JVM, initdb and Temporal overlap instead of queueing.
    for service in chosen:
        stack.launch(service)
    for service in chosen:
        complain("infra:" + _ready_line(service, service.wait_ready()))
    env: dict[str, str] = {}
    if choice.kafka:
        env["COFAB_TEST_KAFKA_BOOTSTRAP"] = kafka.bootstrap_servers
    if choice.temporal:
        env["COFAB_TEST_TEMPORAL_ADDRESS"] = temporal.address
    if choice.postgres:
        env["COFAB_TEST_POSTGRES_URL"] = postgres.create_database(TEST_DATABASE)
        env["COFAB_TEST_POSTGRES_BASE_URL"] = postgres.base_url
    return env


def _run_command(command: Sequence[str], env: Mapping[str, str]) -> int:
    """Run the wrapped command to its end and return its exit status as a shell would."""
    children: list[subprocess.Popen[bytes]] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        for child in children:
            child.send_signal(signum)

    def let_child_handle(signum: int, frame: FrameType | None) -> None:
        # The child shares our terminal's process group, so a Ctrl-C reached it too; wait for it
        # to finish (pytest still prints its report) instead of stopping services under it.
        pass

    # Python-level handlers, unlike SIG_IGN, are reset to the default in the child at exec.
    previous_int = signal.signal(signal.SIGINT, let_child_handle)
    previous_term = signal.signal(signal.SIGTERM, forward)
    try:
        try:
            children.append(subprocess.Popen(list(command), env=dict(env)))
        except OSError as exc:
            raise StackError(f"cannot run {command[0]}: {exc}") from exc
        returncode = children[0].wait()
    finally:
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous_term)
    return returncode if returncode >= 0 else 128 - returncode


# --------------------------------------------------------------------------------------------
# Entry point


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m deploy.local", description=__doc__)
    commands = parser.add_subparsers(dest="subcommand", required=True)
    commands.add_parser("up", help="run the whole local stack in the foreground (make up)")
    commands.add_parser("demo", help="start the stack, run the end-to-end story, stop (make demo)")
    infra = commands.add_parser(
        "infra",
        help="start services on free ports around one command (make test)",
        usage="python -m deploy.local infra [--kafka] [--temporal] [--postgres] -- COMMAND...",
    )
    infra.add_argument("--kafka", action="store_true", help="start a Kafka broker")
    infra.add_argument("--temporal", action="store_true", help="start a Temporal dev server")
    infra.add_argument("--postgres", action="store_true", help="start PostgreSQL")
    infra.add_argument("command", nargs=argparse.REMAINDER, help="the command to run")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; expected failures print one line (no traceback) and give exit code 1."""
    args = _parser().parse_args(argv)
    try:
        if args.subcommand == "up":
            return run_up(os.environ)
        if args.subcommand == "demo":
            from deploy.local.demo import run_demo

            return run_demo(os.environ)
        command = list(args.command)
        if command[:1] == ["--"]:
            command = command[1:]
        choice = InfraChoice(kafka=args.kafka, temporal=args.temporal, postgres=args.postgres)
        return run_infra(choice, command, os.environ)
    except StackError as exc:
        complain(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
