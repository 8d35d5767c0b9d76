"""Provider CRUD, validation, limits, auth and CORS through the real API (PostgreSQL, Redis)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text

from email_service.devserver.dovecot import DovecotServer
from email_service.model import FolderCursor, FolderKey, password_secret_name
from email_service.settings import Settings
from email_service.store.cursors import CursorStore
from tests.conftest import MailUser
from tests.integration.api_harness import ApiHarness, api_environ, provider_body

pytestmark = pytest.mark.integration

PROVIDERS = "/api/v1/providers"


@pytest.fixture
def api(make_api: Callable[..., ApiHarness]) -> ApiHarness:
    return make_api(EMAIL_SERVICE_API_MAX_BODY_BYTES="4096")


def create(api: ApiHarness, tenant: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = api.call("POST", PROVIDERS, tenant=tenant, json_body=body)
    assert reply.status == 201, reply
    created: dict[str, Any] = reply.json()
    assert reply.headers["Location"] == f"{PROVIDERS}/{created['id']}"
    return created


def test_create_get_list_update_delete(
    api: ApiHarness, dovecot: DovecotServer, mail_user: MailUser, tenant: str
) -> None:
    created = create(api, tenant, provider_body(dovecot, mail_user, folders=["INBOX", "Sent"]))
    assert created["name"] == "Support"
    assert created["folders"] == ["INBOX", "Sent"]
    assert created["hasPassword"] is True
    assert created["isActive"] is True and created["isPaused"] is False
    assert created["status"] == "pending"
    assert "password" not in created
    stored = api.parts.secrets.load_secret(tenant, password_secret_name(created["id"]))
    assert stored == mail_user.password

    one = f"{PROVIDERS}/{created['id']}"
    assert api.call("GET", one, tenant=tenant).json() == created
    listed = api.call("GET", PROVIDERS, tenant=tenant).json()
    assert listed == {"providers": [created], "nextCursor": None}

    changed = api.call(
        "PATCH",
        one,
        tenant=tenant,
        json_body={"name": "Help desk", "folders": [], "maxConnections": 2, "password": "new-pw"},
    )
    assert changed.status == 200, changed
    assert changed.json()["name"] == "Help desk"
    assert changed.json()["folders"] == ["INBOX"]  # empty means INBOX
    assert changed.json()["maxConnections"] == 2
    assert changed.json()["updatedAt"] > created["updatedAt"]
    assert api.parts.secrets.load_secret(tenant, password_secret_name(created["id"])) == "new-pw"
    reset = api.call("PATCH", one, tenant=tenant, json_body={"maxConnections": None})
    assert reset.json()["maxConnections"] is None

    assert api.call("DELETE", one, tenant=tenant).status == 204
    assert api.call("GET", one, tenant=tenant).status == 404
    assert api.call("DELETE", one, tenant=tenant).status == 404
    assert api.call("GET", PROVIDERS, tenant=tenant).json() == {"providers": [], "nextCursor": None}
    with api.parts.engine.connect() as connection:
        secrets_left = connection.execute(
            text("SELECT count(*) FROM email_secrets WHERE tenant = :t"), {"t": tenant}
        ).scalar()
    assert secrets_left == 0


def test_delete_removes_folder_state_and_counters(
    api: ApiHarness, dovecot: DovecotServer, mail_user: MailUser, tenant: str
) -> None:
    created = create(api, tenant, provider_body(dovecot, mail_user))
    provider_id = created["id"]
    fence = 0
    CursorStore(api.parts.engine).save_baseline(
        FolderKey(tenant, provider_id, "INBOX"), FolderCursor(7, 3), fence
    )
    stats_key = f'email-service:stats:["{tenant}", "{provider_id}"]'
    api.parts.redis_client.hset(stats_key, "events:INBOX", 3)

    assert api.call("DELETE", f"{PROVIDERS}/{provider_id}", tenant=tenant).status == 204
    with api.parts.engine.connect() as connection:
        rows = connection.execute(
            text("SELECT count(*) FROM imap_folder_state WHERE tenant = :t"), {"t": tenant}
        ).scalar()
    assert rows == 0
    assert api.parts.redis_client.exists(stats_key) == 0


def test_changing_folders_forgets_cursors_of_dropped_folders_and_host_drops_ca(
    api: ApiHarness, dovecot: DovecotServer, mail_user: MailUser, tenant: str
) -> None:
    created = create(api, tenant, provider_body(dovecot, mail_user, folders=["INBOX", "Sent"]))
    provider_id = created["id"]
    cursors = CursorStore(api.parts.engine)
    for folder in ("INBOX", "Sent"):
        cursors.save_baseline(FolderKey(tenant, provider_id, folder), FolderCursor(1, 5), 0)
    with api.parts.engine.begin() as connection:
        connection.execute(
            text("UPDATE imap_email_provider_config SET tls_ca_file = '/ca.pem' WHERE tenant = :t"),
            {"t": tenant},
        )
    one = f"{PROVIDERS}/{provider_id}"
    assert api.call("GET", one, tenant=tenant).json()["hasTlsCaFile"] is True

    api.call("PATCH", one, tenant=tenant, json_body={"folders": ["INBOX"]})
    assert cursors.load_cursor(FolderKey(tenant, provider_id, "INBOX")) == FolderCursor(1, 5)
    assert cursors.load_cursor(FolderKey(tenant, provider_id, "Sent")) is None
    assert api.call("GET", one, tenant=tenant).json()["hasTlsCaFile"] is True  # same host

    api.call("PATCH", one, tenant=tenant, json_body={"host": "localhost"})
    assert api.call("GET", one, tenant=tenant).json()["hasTlsCaFile"] is False


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"name", "mailbox", "host", "port", "security", "username", "password"}),
        ({"port": 0}, {"port"}),
        ({"port": "993"}, {"port"}),
        ({"port": True}, {"port"}),
        ({"security": "ssl"}, {"security"}),
        ({"host": "imap.example.com:993"}, {"host"}),
        ({"host": "127.1"}, {"host"}),
        ({"mailbox": "no-at-sign"}, {"mailbox"}),
        ({"folders": ["INBOX", "INBOX"]}, {"folders[1]"}),
        ({"folders": "INBOX"}, {"folders"}),
        ({"maxConnections": 0}, {"maxConnections"}),
        ({"password": "two\nlines"}, {"password"}),
        ({"name": "  padded"}, {"name"}),
        ({"tlsCaFile": "/etc/ssl/private/key.pem"}, {"tlsCaFile"}),
        ({"isAdmin": True}, {"isAdmin"}),
    ],
    ids=[
        "all-missing",
        "port-zero",
        "port-string",
        "port-bool",
        "security-unknown",
        "host-with-port",
        "host-numeric-shorthand",
        "mailbox-no-at",
        "folders-repeated",
        "folders-not-list",
        "max-connections-zero",
        "password-line-break",
        "name-padded",
        "ca-file-refused",
        "unknown-field",
    ],
)
def test_create_names_every_rejected_field(
    api: ApiHarness,
    dovecot: DovecotServer,
    mail_user: MailUser,
    tenant: str,
    body: dict[str, Any],
    fields: set[str],
) -> None:
    full = provider_body(dovecot, mail_user) if body else {}
    reply = api.call("POST", PROVIDERS, tenant=tenant, json_body={**full, **body})
    assert reply.status == 422, reply
    error = reply.json()
    assert error["error"] == "validation_failed"
    assert {problem["field"] for problem in error["fields"]} == fields
    assert all(problem["message"] for problem in error["fields"])
    assert api.call("GET", PROVIDERS, tenant=tenant).json() == {"providers": [], "nextCursor": None}


@pytest.mark.parametrize(
    ("headers", "body", "status", "code"),
    [
        ({"Content-Type": "application/json"}, b"{not json", 400, "invalid_json"),
        ({"Content-Type": "application/json"}, b"[1, 2]", 400, "invalid_body"),
        ({"Content-Type": "application/json"}, b'{"port": NaN}', 400, "invalid_json"),
        ({"Content-Type": "text/plain"}, b"{}", 415, "unsupported_media_type"),
        ({"Content-Type": "application/json"}, b"{" + b" " * 5000 + b"}", 413, "payload_too_large"),
    ],
    ids=["not-json", "not-object", "nan", "wrong-type", "too-large"],
)
def test_malformed_bodies(
    api: ApiHarness,
    tenant: str,
    headers: dict[str, str],
    body: bytes,
    status: int,
    code: str,
) -> None:
    reply = api.call("POST", PROVIDERS, tenant=tenant, body=body, headers=headers)
    assert reply.status == status, reply
    assert reply.json()["error"] == code


def test_chunked_body_over_the_limit_is_refused_while_reading(api: ApiHarness, tenant: str) -> None:
    import socket

    token = api.token(tenant)
    chunk = b"x" * 3000
    request = (
        (
            f"POST {PROVIDERS} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        + (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 2
        + b"0\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while data := sock.recv(65536):
            answer += data
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"payload_too_large"' in answer


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (None, "missing bearer token"),
        ("Basic dXNlcjpwYXNz", "expected Authorization: Bearer"),
        ("Bearer not.a.jwt", "malformed or its signature"),
    ],
    ids=["missing", "basic", "garbage"],
)
def test_calls_without_a_valid_token_get_401(
    api: ApiHarness, authorization: str | None, message: str
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path in (("GET", PROVIDERS), ("POST", PROVIDERS), ("GET", f"{PROVIDERS}/x/status")):
        reply = api.call(method, path, headers=headers)
        assert reply.status == 401, reply
        assert message in reply.json()["message"]
        assert reply.headers["WWW-Authenticate"].startswith("Bearer")


def test_service_token_acts_for_the_tenant_it_names(environ: dict[str, str], tenant: str) -> None:
    token = "ops-token-" + "z" * 40
    settings = Settings.from_env(
        api_environ(environ, EMAIL_SERVICE_API_SERVICE_TOKENS=f"ops:{token}")
    )
    harness = ApiHarness(settings)
    try:
        auth = {"Authorization": f"Bearer {token}"}
        missing = harness.call("GET", PROVIDERS, headers=auth)
        assert missing.status == 422
        assert missing.json()["fields"][0]["field"] == "X-Tenant-Id"
        reply = harness.call("GET", PROVIDERS, headers={**auth, "X-Tenant-Id": tenant})
        assert reply.status == 200 and reply.json() == {"providers": [], "nextCursor": None}
        wrong = harness.call("GET", PROVIDERS, headers={"Authorization": "Bearer " + "y" * 50})
        assert wrong.status == 401
    finally:
        harness.close()


def test_cors_for_configured_origins_only(api: ApiHarness, tenant: str) -> None:
    preflight = api.call(
        "OPTIONS",
        PROVIDERS,
        headers={
            "Origin": "https://ui.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://ui.example.com"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]

    refused = api.call(
        "OPTIONS",
        PROVIDERS,
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert refused.status == 403
    assert "Access-Control-Allow-Origin" not in refused.headers

    listed = api.call("GET", PROVIDERS, tenant=tenant, headers={"Origin": "https://ui.example.com"})
    assert listed.headers["Access-Control-Allow-Origin"] == "https://ui.example.com"
    assert "Retry-After" in listed.headers["Access-Control-Expose-Headers"]
    denied = api.call("GET", PROVIDERS, headers={"Origin": "https://ui.example.com"})
    assert denied.status == 401
    assert denied.headers["Access-Control-Allow-Origin"] == "https://ui.example.com"
    other = api.call("GET", PROVIDERS, tenant=tenant, headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_health_ready_metrics_and_openapi_on_the_api_role(api: ApiHarness, tenant: str) -> None:
    assert api.call("GET", "/health").json() == {"status": "ok"}
    ready = api.call("GET", "/ready")
    assert ready.status == 200 and ready.json()["checks"] == {"database": "ok", "redis": "ok"}
    api.call("GET", PROVIDERS, tenant=tenant)
    metrics = api.call("GET", "/metrics").body.decode()
    assert (
        'email_service_api_requests_total{method="GET",route="/api/v1/providers",status="200"} 1'
        in metrics
    )
    document = api.call("GET", "/api/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    assert f"{PROVIDERS}/{{providerId}}/status" in document["paths"]
    unknown = api.call("GET", "/api/v1/nothing-here", tenant=tenant)
    assert unknown.status == 404 and unknown.json()["error"] == "not_found"
    wrong_method = api.call("PUT", PROVIDERS, tenant=tenant)
    assert wrong_method.status == 405 and "GET" in wrong_method.headers["Allow"]


def test_unknown_query_parameters_are_refused_by_name(api: ApiHarness, tenant: str) -> None:
    reply = api.call("GET", f"{PROVIDERS}?sort=name&live=true", tenant=tenant)
    assert reply.status == 422
    assert [f["field"] for f in reply.json()["fields"]] == ["live", "sort"]
    assert api.call("GET", PROVIDERS, tenant=tenant).status == 200
