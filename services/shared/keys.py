"""Server secrets kept outside the database, and the sealed positions made with them.

A key file holds at least 32 random bytes as hex (`openssl rand -hex 32`). COFAB_SECRET_KEY_FILE
seals feed cursors and page tokens; every replica of every service must read the same file (k8s:
one Secret mounted into each pod). When the file does not exist, the first process to start writes
a fresh key there (mode 0600); processes starting at the same moment all end up with that one key.

A sealed position (`seal`) hides the number it carries and is bound to a purpose and to who it was
made for: nonce || (number XOR HMAC(key, "pad" | purpose | binding | nonce)) ||
HMAC(key, "tag" | purpose | binding | nonce | masked). It reveals nothing about the number (e.g.
how many events the whole platform stored), and any change, or use by another organization or
for another list, fails `unseal`.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import hashlib
import hmac
import os
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from services.shared.config import ConfigError, Settings

KEY_BYTES = 32
_NONCE = 8
_NUMBER = 8
_TAG = 16


@dataclass(frozen=True)
class ServerKeys:
    """The secrets a serving process holds (never stored in the database)."""

    sealing: bytes

    def __repr__(self) -> str:  # never print a key
        return "ServerKeys(...)"


def read_key(path: Path, setting: str, create: bool = True) -> bytes:
    """The key in `path` (hex, at least 32 bytes); a missing file is created with a fresh key
    when `create`, else it is a ConfigError naming `setting`."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        if not create:
            raise ConfigError(f"{setting}: no key file at {path}") from None
        _create_key_file(path)
        text = path.read_text()
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) < KEY_BYTES:
        raise ConfigError(f"{setting}: {path} must hold at least {KEY_BYTES} bytes as hex")
    return key


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (secrets.token_hex(KEY_BYTES) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(staged, path)  # atomic, and never replaces a key another process wrote first
    except FileExistsError:
        pass
    finally:
        staged.unlink()


def _mac(key: bytes, *parts: bytes) -> bytes:
    return hmac.new(key, b"\x00".join(parts), hashlib.sha256).digest()


def seal(key: bytes, purpose: str, binding: str, number: int) -> str:
    """`number` (0 <= number < 2**64) as an opaque token for `purpose` and `binding`."""
    nonce = secrets.token_bytes(_NONCE)
    pad = _mac(key, b"pad", purpose.encode(), binding.encode(), nonce)[:_NUMBER]
    masked = bytes(a ^ b for a, b in zip(number.to_bytes(_NUMBER, "big"), pad, strict=True))
    tag = _mac(key, b"tag", purpose.encode(), binding.encode(), nonce, masked)[:_TAG]
    return base64.urlsafe_b64encode(nonce + masked + tag).decode().rstrip("=")


def unseal(key: bytes, purpose: str, binding: str, token: str) -> int | None:
    """The number sealed in `token`, or None if it was not made by `seal` with this key,
    purpose and binding (forged, altered, or another organization's or list's)."""
    if len(token) > 64:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) != _NONCE + _NUMBER + _TAG:
        return None
    nonce, masked, tag = raw[:_NONCE], raw[_NONCE : _NONCE + _NUMBER], raw[_NONCE + _NUMBER :]
    expected = _mac(key, b"tag", purpose.encode(), binding.encode(), nonce, masked)[:_TAG]
    if not hmac.compare_digest(tag, expected):
        return None
    pad = _mac(key, b"pad", purpose.encode(), binding.encode(), nonce)[:_NUMBER]
    return int.from_bytes(bytes(a ^ b for a, b in zip(masked, pad, strict=True)), "big")


_keys: contextvars.ContextVar[ServerKeys] = contextvars.ContextVar("cofab_server_keys")


def current_keys() -> ServerKeys:
    """The keys of the server handling this call (set by services.shared.server)."""
    try:
        return _keys.get()
    except LookupError:
        raise RuntimeError("no server keys in this context: call within an RPC") from None


def set_keys(keys: ServerKeys) -> None:
    """Makes `keys` current for the rest of this context (one RPC's task)."""
    _keys.set(keys)


def server_keys(settings: Settings) -> ServerKeys:
    """The serving process's keys, from the settings (a missing key file is created)."""
    return ServerKeys(sealing=read_key(settings.secret_key_path, "COFAB_SECRET_KEY_FILE"))


@contextmanager
def using_keys(keys: ServerKeys) -> Iterator[None]:
    """Makes `keys` the current keys for the calls inside the block."""
    token = _keys.set(keys)
    try:
        yield
    finally:
        _keys.reset(token)
