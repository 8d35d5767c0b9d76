"""The encrypted secret store (shell): ciphertext rows, sealed and opened by ``SecretBox``."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, delete, select, update

from email_service.contract.formats import require_tenant_id
from email_service.errors import SecretUndecryptable
from email_service.security.secretbox import SecretBox
from email_service.store.engine import transaction
from email_service.store.schema import email_secrets

_secrets = email_secrets


class SecretStore:
    """Named secrets per tenant, encrypted at rest."""

    def __init__(self, engine: Engine, box: SecretBox) -> None:
        self._engine = engine
        self._box = box

    def save_secret(self, tenant: str, name: str, plaintext: str) -> None:
        with transaction(self._engine) as connection:
            self.save_in(connection, tenant, name, plaintext)

    def save_in(self, connection: Connection, tenant: str, name: str, plaintext: str) -> None:
        """Save within the caller's transaction (so a secret and a row change commit together).

        Raises ``TenantIdInvalid`` unless the tenant id is a UUID."""
        require_tenant_id(tenant)
        ciphertext = self._box.encrypt(plaintext)
        now = datetime.now(UTC)
        changed = connection.execute(
            update(_secrets)
            .where(_secrets.c.tenant == tenant, _secrets.c.name == name)
            .values(ciphertext=ciphertext, updated_at=now)
        ).rowcount
        if changed == 0:
            connection.execute(
                _secrets.insert().values(
                    tenant=tenant, name=name, ciphertext=ciphertext, created_at=now, updated_at=now
                )
            )

    def load_secret(self, tenant: str, name: str) -> str:
        """The plaintext, or ``SecretUndecryptable`` when missing or unreadable."""
        with transaction(self._engine) as connection:
            ciphertext = connection.execute(
                select(_secrets.c.ciphertext).where(
                    _secrets.c.tenant == tenant, _secrets.c.name == name
                )
            ).scalar()
        if ciphertext is None:
            raise SecretUndecryptable(f"secret {name} is not stored: set it again")
        return self._box.decrypt(bytes(ciphertext), name=name)

    def load_optional(self, tenant: str, name: str) -> str | None:
        """The plaintext, or None when no such secret is stored (or it is unreadable)."""
        try:
            return self.load_secret(tenant, name)
        except SecretUndecryptable:
            return None

    def delete_secret(self, tenant: str, name: str) -> None:
        with transaction(self._engine) as connection:
            connection.execute(
                delete(_secrets).where(_secrets.c.tenant == tenant, _secrets.c.name == name)
            )

    def reencrypt_all(self) -> int:
        """Re-encrypt every secret under the first key; return how many were rewritten."""
        count = 0
        with transaction(self._engine) as connection:
            rows = connection.execute(
                select(_secrets.c.tenant, _secrets.c.name, _secrets.c.ciphertext)
            ).fetchall()
            for row in rows:
                connection.execute(
                    update(_secrets)
                    .where(_secrets.c.tenant == row.tenant, _secrets.c.name == row.name)
                    .values(
                        ciphertext=self._box.reencrypt(bytes(row.ciphertext), name=row.name),
                        updated_at=datetime.now(UTC),
                    )
                )
                count += 1
        return count
