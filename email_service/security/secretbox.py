"""Encrypts and decrypts secrets with rotatable Fernet keys (core: no IO; owns cryptography).

``EMAIL_SERVICE_SECRET_KEYS`` holds one or more Fernet keys, comma separated. The first
encrypts; every key decrypts, so a key is rotated by putting a new one first, running
``email-service keys rotate`` (re-encrypts every stored secret) and then dropping the old.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from email_service.errors import InvalidSettings, SecretUndecryptable


def generate_key() -> str:
    """A new random key, printable and ready for ``EMAIL_SERVICE_SECRET_KEYS``."""
    return Fernet.generate_key().decode("ascii")


class SecretBox:
    """Symmetric, authenticated encryption of small secrets (passwords, tokens)."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        fernets = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key.encode("ascii")))
            except (ValueError, UnicodeEncodeError):
                raise InvalidSettings(
                    f"EMAIL_SERVICE_SECRET_KEYS: key number {position} is not a Fernet key "
                    "(32 bytes, URL-safe base64). Make one with `email-service keys generate`."
                ) from None
        if not fernets:
            raise InvalidSettings(
                "EMAIL_SERVICE_SECRET_KEYS is empty: make a key with `email-service keys generate`."
            )
        self._fernet = MultiFernet(fernets)

    def encrypt(self, plaintext: str) -> bytes:
        """Ciphertext of ``plaintext`` under the first key."""
        return self._fernet.encrypt(plaintext.encode("utf-8"))

    def decrypt(self, ciphertext: bytes, *, name: str) -> str:
        """Plaintext of a stored secret; ``name`` only labels the error."""
        try:
            return self._fernet.decrypt(ciphertext).decode("utf-8")
        except InvalidToken:
            raise SecretUndecryptable(
                f"secret {name} cannot be decrypted with any key in EMAIL_SERVICE_SECRET_KEYS: "
                "add the key it was written with, or store the secret again"
            ) from None

    def reencrypt(self, ciphertext: bytes, *, name: str) -> bytes:
        """The same secret under the first key (for key rotation)."""
        try:
            return self._fernet.rotate(ciphertext)
        except InvalidToken:
            raise SecretUndecryptable(
                f"secret {name} cannot be decrypted with any key in EMAIL_SERVICE_SECRET_KEYS"
            ) from None

    def __repr__(self) -> str:
        return "SecretBox(<keys redacted>)"
