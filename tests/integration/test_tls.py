"""TLS on the gRPC port when a certificate is configured (a self-signed one made by openssl)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import grpc
import pytest

from clients.sdk import connect
from cofab.identity.v1 import identity_pb2
from services.design.app import bootstrap, build_server
from services.shared.config import load_settings
from tests.conftest import make_account
from tests.support import ServerThread


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_tls_server_accepts_tls_clients_only(
    sqlite_url: str, tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    settings = load_settings(
        {
            "COFAB_DATABASE_URL": sqlite_url,
            "COFAB_STATE_DIR": str(tmp_path),
            "COFAB_TLS_CERT_FILE": str(cert),
            "COFAB_TLS_KEY_FILE": str(key),
        }
    )
    deps = bootstrap(settings)
    account = make_account(deps.engine, "acme", "alice")
    server = ServerThread(lambda: build_server(settings, deps, "127.0.0.1:0")).start()
    try:
        with connect(account.token, server.address, server.address, ca_file=cert) as cofab:
            me = cofab.identity.GetCallerIdentity(identity_pb2.GetCallerIdentityRequest())
            assert me.user == "organizations/acme/users/alice"
        with connect(account.token, server.address, server.address) as plaintext:
            with pytest.raises(grpc.RpcError) as caught:
                plaintext.identity.GetCallerIdentity(
                    identity_pb2.GetCallerIdentityRequest(), timeout=5
                )
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop()
        deps.engine.dispose()
