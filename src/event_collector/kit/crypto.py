"""Secrets at rest: AES-256-GCM with a key id, so keys can rotate.

A sealed secret is ``v1.<kid>.<base64url(nonce || ciphertext+tag)>``. The key id says which key
sealed it; the newest key seals, every key in the key directory opens. To rotate: add a key
(``event-collector rotate-secret-key``, or drop a new ``secret-key-*.bin`` file), restart, and
re-seal at leisure; remove an old key only once nothing sealed with it remains.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from event_collector.kit.fileperms import make_owner_only_dir

KEY_PREFIX = "secret-key-"
_VERSION = "v1"


class SecretDecryptionError(Exception):
    """A sealed secret could not be opened (unknown key id, or tampered data)."""


Position = TypeVar("Position")


@dataclass(slots=True)
class ResealProgress(Generic[Position]):
    """One batch of re-sealing after a key rotation (subscriptions, email settings): where to
    continue (None once done), the rows examined and the secrets re-sealed or unreadable."""

    next_after: Position | None
    examined: int = 0
    resealed: int = 0
    unreadable: int = 0


def mask(secret: str | None) -> str | None:
    """What the API shows instead of a secret: its last four characters at most."""
    if not secret:
        return secret
    tail = secret[-4:] if len(secret) >= 12 else ""
    return "********" + tail


def is_masked(value: str | None) -> bool:
    return bool(value) and value.startswith("********")  # type: ignore[union-attr]


def create_key_file(key_dir: Path, kid: str | None = None) -> str:
    """Write a new random key; the exclusive create makes a racing second writer fail."""
    make_owner_only_dir(key_dir)
    kid = kid or secrets.token_hex(4)
    path = key_dir / f"{KEY_PREFIX}{kid}.bin"
    staging = key_dir / f".{KEY_PREFIX}{kid}.{os.getpid()}.tmp"
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(AESGCM.generate_key(bit_length=256))
    try:
        # link() refuses to replace: of two processes starting at once, one key wins.
        os.link(staging, path)
    finally:
        staging.unlink()
    return kid


class SecretBox:
    def __init__(self, keys: dict[str, bytes], current_kid: str) -> None:
        self._ciphers = {kid: AESGCM(key) for kid, key in keys.items()}
        self._current = current_kid
        # A key for MACs derived from the newest key, never the encryption key itself.
        self._mac_key = hmac.new(keys[current_kid], b"event-collector mac", hashlib.sha256).digest()

    @classmethod
    def from_key_dir(cls, key_dir: Path) -> SecretBox:
        """Load every key (newest seals); create the first one when there is none."""
        paths = (
            sorted(key_dir.glob(f"{KEY_PREFIX}*.bin"), key=lambda p: p.stat().st_mtime)
            if key_dir.exists()
            else []
        )
        if not paths:
            with contextlib.suppress(FileExistsError):
                create_key_file(key_dir, kid="k1")
            paths = sorted(key_dir.glob(f"{KEY_PREFIX}*.bin"), key=lambda p: p.stat().st_mtime)
        keys = {p.stem.removeprefix(KEY_PREFIX): p.read_bytes() for p in paths}
        for kid, key in keys.items():
            if len(key) != 32:
                raise ValueError(f"secret key {kid} in {key_dir} is not 32 bytes")
        return cls(keys, current_kid=paths[-1].stem.removeprefix(KEY_PREFIX))

    @property
    def current_kid(self) -> str:
        return self._current

    def seal(self, plaintext: str, *, associated_data: str = "") -> str:
        nonce = os.urandom(12)
        sealed = self._ciphers[self._current].encrypt(
            nonce, plaintext.encode(), associated_data.encode()
        )
        encoded = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
        return f"{_VERSION}.{self._current}.{encoded}"

    def open(self, token: str, *, associated_data: str = "") -> str:
        try:
            version, kid, encoded = token.split(".", 2)
        except ValueError:
            raise SecretDecryptionError("not a sealed secret") from None
        cipher = self._ciphers.get(kid)
        if version != _VERSION or cipher is None:
            raise SecretDecryptionError(f"no key {kid!r} to open this secret")
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        try:
            return cipher.decrypt(raw[:12], raw[12:], associated_data.encode()).decode()
        except InvalidTag:
            raise SecretDecryptionError("the secret does not match its key (tampered?)") from None

    def resealed(self, token: str, *, associated_data: str = "") -> str | None:
        """``token`` sealed again with the newest key; None when the newest key sealed it.
        Raises SecretDecryptionError when no key opens it."""
        if self.key_id_of(token) == self._current:
            return None
        return self.seal(
            self.open(token, associated_data=associated_data), associated_data=associated_data
        )

    def key_id_of(self, token: str) -> str:
        return token.split(".", 2)[1]

    def mac(self, purpose: str, message: str) -> str:
        """HMAC-SHA256 of ``message`` for ``purpose`` (e.g. a CSRF token bound to a session);
        every process sharing the key directory computes the same value."""
        digest = hmac.new(self._mac_key, f"{purpose}\0{message}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")
