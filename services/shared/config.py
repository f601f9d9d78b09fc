"""Typed settings, read once from the environment at process start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it."""


@dataclass(frozen=True)
class Settings:
    """Every setting a cofab process reads. README.md lists them with their defaults."""

    state_dir: Path
    database_url: str
    kafka_bootstrap: str
    temporal_address: str
    temporal_namespace: str
    temporal_task_queue: str
    design_listen: str
    supply_listen: str
    design_address: str
    supply_address: str
    tls_cert_file: Path | None
    tls_key_file: Path | None
    tls_ca_file: Path | None
    service_token_file: Path | None
    ready_file: Path | None
    auth_cache_seconds: float
    # Design revisions: upload limit, blob directory, the ingest worker pool and its leases.
    max_upload_bytes: int = 512 * 1024 * 1024
    blob_dir: Path | None = None
    ingest_workers: int = 2
    ingest_attempts: int = 3
    ingest_lease_seconds: float = 60.0
    # The partner feed keeps each event this many days; older ones are pruned by its writer.
    feed_retention_days: int = 30
    # Secrets outside the database (services.shared.keys, services.shared.audit); None: a file
    # under state_dir, created with a fresh key when missing.
    secret_key_file: Path | None = None
    audit_key_file: Path | None = None
    # Where the audit log's head (count and keyed hash) is appended after every entry.
    audit_anchor_file: Path | None = None

    @property
    def secret_key_path(self) -> Path:
        """Seals feed cursors and page tokens; every service replica must read the same key."""
        return self.secret_key_file or self.state_dir / "keys" / "server.key"

    @property
    def audit_key_path(self) -> Path:
        """Keys the audit chain; whoever runs `cofab admin verify-audit` needs it too."""
        return self.audit_key_file or self.state_dir / "keys" / "audit.key"

    @property
    def audit_anchor_path(self) -> Path:
        return self.audit_anchor_file or self.state_dir / "audit-anchor.log"

    @property
    def blob_root(self) -> Path:
        """Where the design service keeps content-addressed blobs."""
        return self.blob_dir if self.blob_dir is not None else self.state_dir / "blobs"

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert_file is not None


def _path(env: Mapping[str, str], name: str) -> Path | None:
    value = env.get(name, "").strip()
    return Path(value) if value else None


def _address(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, default).strip()
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"{name} must be host:port, got {value!r}")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 3600:
        raise ConfigError(f"{name} must be a number of seconds from 0 to 3600, got {raw!r}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ConfigError(f"{name} must be an integer from {low} to {high}, got {raw!r}")
    return value


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Reads the COFAB_* environment once; a malformed value fails here with its name."""
    env = os.environ if environ is None else environ
    state_dir = Path(env.get("COFAB_STATE_DIR", ".state")).resolve()
    cert, key = _path(env, "COFAB_TLS_CERT_FILE"), _path(env, "COFAB_TLS_KEY_FILE")
    if (cert is None) != (key is None):
        raise ConfigError("COFAB_TLS_CERT_FILE and COFAB_TLS_KEY_FILE must be set together")
    for name, path in (("COFAB_TLS_CERT_FILE", cert), ("COFAB_TLS_KEY_FILE", key)):
        if path is not None and not path.is_file():
            raise ConfigError(f"{name} points to {path}, which is not a readable file")
    return Settings(
        state_dir=state_dir,
        database_url=env.get("COFAB_DATABASE_URL", f"sqlite:///{state_dir / 'cofab.db'}"),
        kafka_bootstrap=env.get("COFAB_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
        temporal_address=_address(env, "COFAB_TEMPORAL_ADDRESS", "127.0.0.1:7233"),
        temporal_namespace=env.get("COFAB_TEMPORAL_NAMESPACE", "default"),
        temporal_task_queue=env.get("COFAB_TEMPORAL_TASK_QUEUE", "cofab"),
        design_listen=_address(env, "COFAB_DESIGN_LISTEN", "127.0.0.1:50051"),
        supply_listen=_address(env, "COFAB_SUPPLY_LISTEN", "127.0.0.1:50052"),
        design_address=_address(env, "COFAB_DESIGN_ADDRESS", "127.0.0.1:50051"),
        supply_address=_address(env, "COFAB_SUPPLY_ADDRESS", "127.0.0.1:50052"),
        tls_cert_file=cert,
        tls_key_file=key,
        tls_ca_file=_path(env, "COFAB_TLS_CA_FILE"),
        service_token_file=_path(env, "COFAB_SERVICE_TOKEN_FILE"),
        ready_file=_path(env, "COFAB_READY_FILE"),
        auth_cache_seconds=_seconds(env, "COFAB_AUTH_CACHE_SECONDS", 10.0),
        max_upload_bytes=_int(env, "COFAB_MAX_UPLOAD_BYTES", 512 * 1024 * 1024, 1, 2**40),
        blob_dir=_path(env, "COFAB_BLOB_DIR"),
        ingest_workers=_int(env, "COFAB_INGEST_WORKERS", 2, 1, 64),
        ingest_attempts=_int(env, "COFAB_INGEST_ATTEMPTS", 3, 1, 10),
        ingest_lease_seconds=_seconds(env, "COFAB_INGEST_LEASE_SECONDS", 60.0) or 60.0,
        feed_retention_days=_int(env, "COFAB_FEED_RETENTION_DAYS", 30, 1, 3650),
        secret_key_file=_path(env, "COFAB_SECRET_KEY_FILE"),
        audit_key_file=_path(env, "COFAB_AUDIT_KEY_FILE"),
        audit_anchor_file=_path(env, "COFAB_AUDIT_ANCHOR_FILE"),
    )
