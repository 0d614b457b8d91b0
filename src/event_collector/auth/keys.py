"""The server's JWT signing keys: generated on first start, persisted in the key directory.

Several processes may share one key directory (scale-out on one host, or a shared volume): the
first to start creates the key with an exclusive create, the others read it. Every ``*.pem`` in
the directory is published in the JWKS; the newest one signs, so a key rotates by adding a file.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from event_collector.kit.fileperms import make_owner_only_dir

KEY_PREFIX = "jwt-signing-"


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: rsa.RSAPrivateKey

    @property
    def public_jwk(self) -> dict[str, Any]:
        numbers = self.private_key.public_key().public_numbers()
        return {
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": _b64url_uint(numbers.n),
            "e": _b64url_uint(numbers.e),
        }


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _kid_for(key: rsa.RSAPrivateKey) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:16]


def generate_key_file(key_dir: Path) -> Path:
    make_owner_only_dir(key_dir)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = key_dir / f"{KEY_PREFIX}{_kid_for(key)}.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return path


def load_signing_keys(key_dir: Path, *, create: bool = True) -> list[SigningKey]:
    """All keys, newest first; creates the first one when the directory has none."""
    paths = (
        sorted(key_dir.glob(f"{KEY_PREFIX}*.pem"), key=lambda p: p.stat().st_mtime, reverse=True)
        if key_dir.exists()
        else []
    )
    if not paths and create:
        lock = key_dir / ".create.lock"
        make_owner_only_dir(key_dir)
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return _wait_for_key(key_dir)
        os.close(fd)
        try:
            paths = [generate_key_file(key_dir)]
        finally:
            lock.unlink(missing_ok=True)
    keys = []
    for path in paths:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(private, rsa.RSAPrivateKey):
            raise ValueError(f"{path} is not an RSA private key")
        keys.append(SigningKey(kid=_kid_for(private), private_key=private))
    return keys


def _wait_for_key(key_dir: Path) -> list[SigningKey]:
    import time

    for _ in range(100):
        time.sleep(0.05)
        keys = load_signing_keys(key_dir, create=False)
        if keys:
            return keys
    raise RuntimeError(f"another process is creating the signing key in {key_dir}; none appeared")
