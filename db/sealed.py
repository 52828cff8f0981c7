"""Personal data sealed at rest: AES-256-GCM in the application, so a dump, a backup or a
replica of the database shows no customer's email, name, address or tax id.

A sealed value is text, `<key id>.<base64url(nonce || ciphertext || tag)>`: each value names
the key that sealed it, so keys rotate without a flag day (DATA_ENCRYPTION_KEYS lists them,
the first seals, every one opens; `billing-gateway keys rotate` re-seals under the first).
An empty string is stored as is (it says nothing about anyone).

Exact-email search cannot compare ciphertexts (each seal has a fresh nonce), so the accounts
keep a blind index beside the email: an HMAC of the normalised address under a key derived
from the sealing key. A lookup computes it under every key, so it finds rows of both sides
of a rotation.

The keyring is the process's (`install`): column types have no other way to reach it."""

import base64
import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Text
from sqlalchemy.types import TypeDecorator

from gateway.settings import ConfigurationError, Settings

KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
KEY_BYTES = 32
NONCE_BYTES = 12
# Where development keeps the key it generated, under BILLING_DATA_DIR.
DEVELOPMENT_KEY_FILE = "data-encryption-keys"
# In an envelope (a JSONB row holding a few clear fields for SQL), the sealed body's key.
SEALED = "sealed"


class SealedValueError(Exception):
    """A value no key of the keyring opens: a missing key, or a changed ciphertext."""


@dataclass(frozen=True)
class DataKey:
    id: str
    cipher: AESGCM
    index_key: bytes


def _data_key(key_id: str, secret: bytes) -> DataKey:
    index_key = HKDF(
        algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=b"billing-gateway email index"
    ).derive(secret)
    return DataKey(key_id, AESGCM(secret), index_key)


class Keyring:
    """The data keys, the first of which seals."""

    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        if not keys:
            raise ConfigurationError("DATA_ENCRYPTION_KEYS holds no key")
        self.keys = {key_id: _data_key(key_id, secret) for key_id, secret in keys}
        if len(self.keys) != len(keys):
            raise ConfigurationError("DATA_ENCRYPTION_KEYS names a key id twice")
        self.primary = self.keys[keys[0][0]]

    @classmethod
    def parse(cls, text: str) -> "Keyring":
        """From `id:base64key,id:base64key` (each key 32 random bytes; the first seals)."""
        keys = []
        for part in (part.strip() for part in text.split(",")):
            key_id, _, encoded = part.partition(":")
            if not KEY_ID.fullmatch(key_id):
                raise ConfigurationError(
                    "DATA_ENCRYPTION_KEYS: each key is <id>:<base64 of 32 bytes>, the id 1-32 "
                    "letters, digits, _ or -"
                )
            try:
                secret = base64.b64decode(encoded, altchars=b"-_", validate=True)
            except ValueError:
                secret = b""
            if len(secret) != KEY_BYTES:
                raise ConfigurationError(
                    f"DATA_ENCRYPTION_KEYS: key {key_id} is not the base64 of {KEY_BYTES} bytes"
                )
            keys.append((key_id, secret))
        return cls(keys)

    def seal(self, plaintext: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self.primary.cipher.encrypt(nonce, plaintext.encode(), None)
        return f"{self.primary.id}.{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def open(self, value: str) -> str:
        key_id, _, encoded = value.partition(".")
        key = self.keys.get(key_id)
        if key is None:
            raise SealedValueError(f"no data key {key_id!r} in DATA_ENCRYPTION_KEYS")
        raw = base64.urlsafe_b64decode(encoded)
        try:
            return key.cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], None).decode()
        except InvalidTag:
            raise SealedValueError(f"a value sealed by key {key_id!r} does not open") from None

    def reseal(self, value: str) -> str:
        """`value` sealed by the first key (unchanged if it already is)."""
        return value if self.is_current(value) else self.seal(self.open(value))

    @property
    def prefix(self) -> str:
        """How every value sealed by the first key begins."""
        return f"{self.primary.id}."

    def is_current(self, value: str) -> bool:
        return value.startswith(self.prefix)

    def email_index(self, email: str | None) -> bytes | None:
        """The blind index of an email under the sealing key (None for none)."""
        return _index(self.primary, email) if email else None

    def email_indexes(self, email: str) -> list[bytes]:
        """The blind index of `email` under every key: what a lookup matches."""
        return [_index(key, email) for key in self.keys.values()]


def _index(key: DataKey, email: str) -> bytes:
    normalised = email.strip().casefold().encode()
    return hmac.new(key.index_key, normalised, hashlib.sha256).digest()


def new_key_text(key_id: str) -> str:
    """A fresh key as DATA_ENCRYPTION_KEYS writes it."""
    if not KEY_ID.fullmatch(key_id):
        raise ConfigurationError("a key id is 1-32 letters, digits, _ or -")
    return f"{key_id}:{base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode()}"


def keyring_for(settings: Settings) -> Keyring:
    """DATA_ENCRYPTION_KEYS; without it (never in production: Settings refuses), a key
    generated once under BILLING_DATA_DIR."""
    if settings.data_encryption_keys is not None:
        return Keyring.parse(settings.data_encryption_keys.get_secret_value())
    path = Path(settings.billing_data_dir) / DEVELOPMENT_KEY_FILE
    if not path.exists():
        _write_once(path, new_key_text("dev1") + "\n")
    return Keyring.parse(path.read_text().strip())


def _write_once(path: Path, text: str) -> None:
    """`text` at `path` unless a file is there; processes starting together (a gateway and
    its worker on one volume) all end up reading the one that won, never a partial one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    with os.fdopen(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as file:
        file.write(text)
    try:
        os.link(draft, path)  # atomic, and refused when the file exists
    except FileExistsError:
        pass
    finally:
        draft.unlink()


_installed: Keyring | None = None


def install(keyring: Keyring) -> None:
    global _installed
    _installed = keyring


def keyring() -> Keyring:
    if _installed is None:
        raise RuntimeError("no data keyring installed (db.database.open_database installs it)")
    return _installed


def seal(plaintext: str | None) -> str | None:
    return keyring().seal(plaintext) if plaintext else plaintext


def unseal(value: str | None) -> str | None:
    return keyring().open(value) if value else value


def seal_json(value: Any) -> str | None:
    return keyring().seal(orjson.dumps(value).decode()) if value is not None else None


def unseal_json(value: str | None) -> Any:
    return orjson.loads(keyring().open(value)) if value is not None else None


def envelope(clear: dict[str, Any], body: str) -> dict[str, Any]:
    """A JSONB row's value: `clear` (what SQL reads) with `body` sealed beside it."""
    return clear | {SEALED: keyring().seal(body)}


class SealedText(TypeDecorator[str]):
    """A text column holding personal data, sealed on the way in and opened on the way out."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        return seal(value)

    def process_result_value(self, value: str | None, dialect: Any) -> str | None:
        return unseal(value)


class SealedJSON(TypeDecorator[Any]):
    """A JSON value holding personal data (an address, tax ids, a stored response), sealed."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        return seal_json(value)

    def process_result_value(self, value: str | None, dialect: Any) -> Any:
        return unseal_json(value)
