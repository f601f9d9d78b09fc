from pathlib import Path

import pytest

from services.shared.config import ConfigError, load_settings


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings({"COFAB_STATE_DIR": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path / 'cofab.db'}"
    assert settings.design_listen == "127.0.0.1:50051"
    assert not settings.tls_enabled


def test_tls_needs_both_files(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    with pytest.raises(ConfigError, match="COFAB_TLS_KEY_FILE"):
        load_settings({"COFAB_TLS_CERT_FILE": str(cert)})


def test_missing_tls_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="COFAB_TLS_CERT_FILE"):
        load_settings(
            {"COFAB_TLS_CERT_FILE": str(tmp_path / "nope"), "COFAB_TLS_KEY_FILE": str(tmp_path)}
        )


@pytest.mark.parametrize("value", ["localhost", ":80", "host:http", "host:70000"])
def test_malformed_address_is_named(value: str) -> None:
    with pytest.raises(ConfigError, match="COFAB_DESIGN_LISTEN"):
        load_settings({"COFAB_DESIGN_LISTEN": value})
