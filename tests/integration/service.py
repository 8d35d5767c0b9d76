"""An in-process worker (supervisor + listener threads) for integration tests."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from email_service.devserver.mailserver import MailServer
from email_service.model import FolderKey, ImapEndpoint, NewProvider, ProviderConfig, Security
from email_service.settings import Settings
from email_service.store.provider_admin import ProviderAdmin, ProviderSecrets
from email_service.worker.process import Supervisor, WorkerParts


class InProcessWorker:
    """Builds the worker's parts from settings; starts and stops its supervisor thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.parts = WorkerParts.build(settings)
        self.supervisor: Supervisor | None = None
        self._thread: threading.Thread | None = None

    def add_provider(
        self,
        tenant: str,
        server: MailServer,
        username: str,
        password: str,
        *,
        folders: Sequence[str] = ("INBOX",),
        host: str = "localhost",
        security: Security = Security.TLS,
        ca_file: str | None = "default",
        port: int | None = None,
    ) -> ProviderConfig:
        if port is None:
            port = server.imaps_port if security is Security.TLS else server.imap_port
        endpoint = ImapEndpoint(
            host=host,
            port=port,
            security=security,
            tls_ca_file=str(server.ca_file) if ca_file == "default" else ca_file,
        )
        provider_id = ProviderAdmin.of(self.parts).create(
            NewProvider(
                tenant=tenant,
                name="Support",
                mailbox=f"{username}@localhost",
                endpoint=endpoint,
                username=username,
                folders=tuple(folders),
            ),
            ProviderSecrets(password=password),
        )
        return self.parts.providers.find_provider(provider_id, tenant)

    def add_fake_provider(
        self, tenant: str, port: int, folders: Sequence[str] = ("INBOX",)
    ) -> ProviderConfig:
        """A provider on the scriptable fake server (``devserver/fake_imap.py``), any password."""
        provider_id = ProviderAdmin.of(self.parts).create(
            NewProvider(
                tenant=tenant,
                name="Fake",
                mailbox="support@example.com",
                endpoint=ImapEndpoint("127.0.0.1", port, Security.NONE),
                username="support@example.com",
                folders=tuple(folders),
            ),
            ProviderSecrets(password="any"),
        )
        return self.parts.providers.find_provider(provider_id, tenant)

    def start(self) -> None:
        self.supervisor = Supervisor(self.parts)
        self._thread = threading.Thread(target=self.supervisor.run, daemon=True)
        self._thread.start()
        self.supervisor.refreshed.wait(10)

    def stop(self) -> None:
        if self.supervisor is not None and self._thread is not None:
            self.supervisor.stop_event.set()
            self._thread.join(30)
            assert not self._thread.is_alive(), "supervisor did not stop"
            self.supervisor = None

    def close(self) -> None:
        self.stop()
        self.parts.listener_context.builder.close()
        self.parts.listener_context.publisher.client.close()
        self.parts.engine.dispose()

    def listener_states(self) -> list[str]:
        assert self.supervisor is not None
        return [listener.state for listener in self.supervisor.listeners.values()]

    def cursor(self, provider: ProviderConfig, folder: str = "INBOX") -> int | None:
        cursor = self.parts.listener_context.cursors.load_cursor(
            FolderKey(provider.tenant, provider.id, folder)
        )
        return None if cursor is None else cursor.last_uid
