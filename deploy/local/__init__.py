"""Run cofab's real services (Kafka, Temporal, PostgreSQL, the Python processes) locally.

`python -m deploy.local up` runs the whole stack in the foreground; `python -m deploy.local infra`
starts the infrastructure for a test run. Tests import the classes below to start, stop and crash
services themselves.
"""

from deploy.local.processes import (
    REPO_ROOT,
    HealthCheck,
    KafkaBroker,
    ManagedProcess,
    PostgresServer,
    PythonService,
    RunAs,
    Service,
    StackError,
    TemporalDevServer,
    check_port_free,
    default_kafka_libs,
    default_temporal_bin,
    describe_returncode,
    find_postgres_bin,
    free_ports,
    grpc_health_serving,
    require_java,
    require_kafka_libs,
    require_temporal_bin,
    run_to_completion,
    tcp_port_open,
)

__all__ = [
    "REPO_ROOT",
    "HealthCheck",
    "KafkaBroker",
    "ManagedProcess",
    "PostgresServer",
    "PythonService",
    "RunAs",
    "Service",
    "StackError",
    "TemporalDevServer",
    "check_port_free",
    "default_kafka_libs",
    "default_temporal_bin",
    "describe_returncode",
    "find_postgres_bin",
    "free_ports",
    "grpc_health_serving",
    "require_java",
    "require_kafka_libs",
    "require_temporal_bin",
    "run_to_completion",
    "tcp_port_open",
]
