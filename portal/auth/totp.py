"""TOTP (RFC 6238) with replay protection, recovery codes, and secret sealing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time

import pyotp
import segno
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

STEP_SECONDS = 30
VALID_WINDOW = 1  # ±1 step of drift, as the foundation issue fixes it
ISSUER = "Fil'R"
RECOVERY_CODE_COUNT = 10
_RECOVERY_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def new_secret() -> str:
    """A fresh base32 TOTP secret (160 bits)."""
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, account: str) -> str:
    """otpauth:// URI for authenticator apps."""
    return pyotp.TOTP(secret, interval=STEP_SECONDS).provisioning_uri(
        name=account, issuer_name=ISSUER
    )


def qr_svg(uri: str) -> str:
    """The URI as an inline SVG QR code (no script, allowed by the CSP)."""
    svg: str = segno.make(uri, error="m").svg_inline(scale=5, title="QR code d'enrôlement")
    return svg


def current_step(now: float | None = None) -> int:
    """The TOTP time step of *now*."""
    return int((time.time() if now is None else now) // STEP_SECONDS)


def matching_step(secret: str, code: str, now: float | None = None) -> int | None:
    """The step (within ±1) whose code equals *code*, or None."""
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret, interval=STEP_SECONDS)
    step = current_step(now)
    found = None
    for candidate in range(step - VALID_WINDOW, step + VALID_WINDOW + 1):
        expected = totp.generate_otp(candidate)
        # Compare all candidates so timing does not tell which one matched.
        if hmac.compare_digest(expected, code):
            found = candidate
    return found


def new_recovery_codes() -> list[str]:
    """Ten single-use codes of 80 random bits, formatted XXXX-XXXX-XXXX-XXXX."""
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(16))
        codes.append("-".join(raw[i : i + 4] for i in range(0, 16, 4)))
    return codes


def normalise_recovery_code(code: str) -> str:
    """Upper case without separators or spaces."""
    return "".join(c for c in code.upper() if c.isalnum())


def recovery_code_digest(code: str) -> str:
    """SHA-256 of the normalised code (80 bits of entropy make a slow hash unnecessary)."""
    return hashlib.sha256(normalise_recovery_code(code).encode()).hexdigest()


def looks_like_recovery_code(code: str) -> bool:
    """True for a 16-character code (recovery) rather than a 6-digit TOTP."""
    return len(normalise_recovery_code(code)) == 16


class SecretBox:
    """Seals TOTP secrets in the database with a key derived from the application secret."""

    def __init__(self, secret_key: str) -> None:
        key = HKDF(algorithm=SHA256(), length=32, salt=None, info=b"filr totp secrets v1").derive(
            secret_key.encode()
        )
        self._aead = AESGCM(key)

    def seal(self, plaintext: str, user_id: str) -> str:
        """Encrypt *plaintext* bound to *user_id*."""
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), user_id.encode())
        return "v1:" + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, sealed: str, user_id: str) -> str:
        """Decrypt a value made by `seal` for the same *user_id*."""
        if not sealed.startswith("v1:"):
            raise ValueError("unknown sealed format")
        raw = base64.urlsafe_b64decode(sealed[3:])
        return self._aead.decrypt(raw[:12], raw[12:], user_id.encode()).decode()
