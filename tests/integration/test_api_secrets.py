"""Secrets never appear in a response body or a log line.

A scripted session sets passwords (create, change, a wrong one, malformed ones, one in a
misspelt field), uses them (test, folders, live status, a worker publishing with them),
and then every response body and every log record of the run (DEBUG and up, formatted
with tracebacks) is searched for each secret value: passwords, the JWT secret, a service
token, the bearer tokens themselves and the encryption key.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import redis

from email_service.devserver.dovecot import DovecotServer
from email_service.settings import Settings
from tests.conftest import MailUser
from tests.helpers import make_message, unique, wait_for, wait_for_stream_entries
from tests.integration.api_harness import JWT_SECRET, ApiHarness, api_environ, provider_body
from tests.integration.service import InProcessWorker

pytestmark = pytest.mark.integration

PROVIDERS = "/api/v1/providers"


def test_no_secret_in_any_response_or_log_line(
    environ: dict[str, str],
    dovecot: DovecotServer,
    mail_user: MailUser,
    tenant: str,
    redis_client: redis.Redis[bytes],
    stream: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    service_token = unique("service-token") + "-" + "s" * 32
    env = api_environ(environ, EMAIL_SERVICE_API_SERVICE_TOKENS=f"ops:{service_token}")
    settings = Settings.from_env(env)
    api = ApiHarness(settings)
    worker = InProcessWorker(Settings.from_env(env))
    first_password = unique("first-pw")
    wrong_password = unique("wrong-pw")
    malformed_password = unique("malformed-pw")
    misspelt_password = unique("misspelt-pw")
    secrets = [
        first_password,
        mail_user.password,
        wrong_password,
        malformed_password,
        misspelt_password,
        JWT_SECRET,
        service_token,
        env["EMAIL_SERVICE_SECRET_KEYS"],
    ]
    try:
        token = api.token(tenant)
        secrets.append(token)
        body = provider_body(dovecot, mail_user, password=first_password)
        created = api.call("POST", PROVIDERS, tenant=tenant, json_body=body)
        assert created.status == 201
        one = f"{PROVIDERS}/{created.json()['id']}"
        failed = api.call("POST", f"{one}/test", tenant=tenant).json()
        assert failed["stage"] == "login"
        changed = api.call("PATCH", one, tenant=tenant, json_body={"password": mail_user.password})
        assert changed.status == 200
        assert api.call("POST", f"{one}/test", tenant=tenant).json()["ok"] is True
        assert api.call("GET", f"{one}/folders", tenant=tenant).status == 200
        assert api.call("GET", f"{one}/status?live=true", tenant=tenant).status == 200
        rejected: list[dict[str, Any]] = [
            {"password": f"{malformed_password}\r\nA1 LOGOUT"},
            {"pasword": misspelt_password},
            {"password": 12345, "name": misspelt_password + "\x00"},
        ]
        for patch in rejected:
            assert api.call("PATCH", one, tenant=tenant, json_body=patch).status == 422
        other = api.call(
            "POST",
            PROVIDERS,
            tenant=tenant,
            json_body=provider_body(dovecot, mail_user, password=wrong_password, port=1),
        )
        assert other.status == 201
        assert (
            api.call("POST", f"{PROVIDERS}/{other.json()['id']}/test", tenant=tenant).status == 200
        )
        as_operator = api.call(
            "GET",
            PROVIDERS,
            headers={"Authorization": f"Bearer {service_token}", "X-Tenant-Id": tenant},
        )
        assert as_operator.status == 200
        bad_token = api.call("GET", PROVIDERS, headers={"Authorization": f"Bearer {token}x"})
        assert bad_token.status == 401

        worker.start()
        wait_for(lambda: "idle" in worker.listener_states(), timeout_s=10, what="IDLE")
        dovecot.deliver(mail_user.name, make_message("secret test"))
        wait_for_stream_entries(redis_client, stream, 1)
        assert api.call("GET", PROVIDERS, tenant=tenant).status == 200
    finally:
        worker.close()
        api.close()

    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    log_lines = [formatter.format(record) for record in caplog.records]
    assert len(api.bodies) > 10 and len(log_lines) > 10
    for secret in secrets:
        for body_bytes in api.bodies:
            assert secret.encode() not in body_bytes, (
                f"a secret is in a response: {body_bytes[:200]!r}"
            )
        for line in log_lines:
            assert secret not in line, f"a secret is in a log line: {line[:200]}"
