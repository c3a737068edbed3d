"""Channel secrets at rest: HMAC keys encrypted with a server key, tokens hashed.

The server key comes from ``CHATSESSIONS_SECRET_KEY`` when set (an encryption key is
derived from it with HKDF, under a label of its own, so it never doubles as the cursor
signing key), else from a key file generated once beside the SQLite database (or in
``./data/`` with PostgreSQL), mode 0600. It is never stored in the database: a dump of the
database alone does not reveal the secrets it encrypts (docs/security.md).

>>> box = Vault(b"k" * 32)
>>> box.open(box.seal({"a": 1}, aad="u:c"), aad="u:c")
{'a': 1}
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.engine import make_url

from chatsessions.config import Settings

__all__ = [
    "SealedSecretError",
    "Vault",
    "hash_token",
    "key_file_path",
    "load_vault",
    "mask",
    "token_matches",
]

_HKDF_INFO = b"chatsessions/channel-secrets/v1"
_PREFIX = "v1."


class SealedSecretError(Exception):
    """A stored secret cannot be opened (the server key changed or the row was altered)."""


def hash_token(token: str) -> str:
    """SHA-256 hex of a high-entropy token (the Telegram secret token, a verify token)."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(given: str, stored_hash: str) -> bool:
    """Whether ``given`` hashes to ``stored_hash``, compared in constant time."""
    return hmac.compare_digest(hash_token(given).encode(), stored_hash.encode())


def mask(secret: str) -> str:
    """``…`` and the last five characters (only ``…`` for a secret under 16 characters,
    whose last five would give away too much of it)."""
    return "…" + secret[-5:] if len(secret) >= 16 else "…"


class Vault:
    """AES-256-GCM with a key derived from the server key; ``aad`` binds a sealed value to
    its row (a value copied into another channel's row does not open there)."""

    def __init__(self, server_key: bytes) -> None:
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
            server_key
        )
        self._aead = AESGCM(derived)

    def seal(self, value: Any, *, aad: str) -> str:
        """Encrypt a JSON-serialisable value into a printable string."""
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, orjson.dumps(value), aad.encode())
        return _PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, sealed: str, *, aad: str) -> Any:
        """Decrypt what :meth:`seal` produced for the same ``aad``."""
        if not sealed.startswith(_PREFIX):
            raise SealedSecretError("unknown format")
        try:
            raw = base64.urlsafe_b64decode(sealed[len(_PREFIX) :])
            plain = self._aead.decrypt(raw[:12], raw[12:], aad.encode())
        except (InvalidTag, ValueError) as exc:
            raise SealedSecretError("cannot decrypt (was the server key changed?)") from exc
        return orjson.loads(plain)


def key_file_path(settings: Settings) -> Path:
    """Where the generated server key lives: the configured file, else beside the SQLite
    database, else ``./data/secret.key``."""
    if settings.secret_key_file:
        return Path(settings.secret_key_file)
    if settings.is_sqlite:
        database = make_url(settings.async_database_url).database
        if database:
            return Path(database).parent / "secret.key"
    return Path("data") / "secret.key"


def _read_or_create_key_file(path: Path) -> bytes:
    """The key in ``path``, generated atomically when missing (several processes starting
    at once agree on one key: the first link wins, the others read it)."""
    try:
        return base64.urlsafe_b64decode(path.read_bytes().strip())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".secret-key-")
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, base64.urlsafe_b64encode(secrets.token_bytes(32)) + b"\n")
        os.fsync(fd)
        os.close(fd)
        with contextlib.suppress(FileExistsError):  # another process made it first
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
    return base64.urlsafe_b64decode(path.read_bytes().strip())


def load_vault(settings: Settings) -> Vault:
    """The vault of this server (``CHATSESSIONS_SECRET_KEY``, or the key file)."""
    if settings.secret_key:
        return Vault(settings.secret_key.encode())
    return Vault(_read_or_create_key_file(key_file_path(settings)))
