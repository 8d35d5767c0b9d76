"""``email-service api`` as a user runs it, next to a worker process: HTTP all the way."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest
import redis

from email_service.devserver.dovecot import DovecotServer
from tests.conftest import MailUser
from tests.e2e.processes import (
    JWT_SECRET,
    ApiProcess,
    WorkerProcess,
    api_env,
    cli,
    free_port,
)
from tests.helpers import TENANT_A, make_message, subjects, wait_for, wait_for_stream_entries
from tests.integration.api_harness import provider_body

pytestmark = pytest.mark.e2e


def test_api_without_jwt_settings_says_which_variable(environ: dict[str, str]) -> None:
    result = cli("api", "--port", str(free_port()), env=environ)
    assert result.returncode == 2
    assert "EMAIL_SERVICE_API_JWT_SECRET is not set" in result.stderr


def test_manage_a_provider_over_http_while_a_worker_follows_it(
    environ: dict[str, str],
    dovecot: DovecotServer,
    mail_user: MailUser,
    redis_client: redis.Redis[bytes],
    stream: str,
    processes: list[ApiProcess | WorkerProcess],
    tmp_path: Path,
) -> None:
    env = api_env(environ)
    api = ApiProcess(env, tmp_path / "api.log")
    processes.append(api)
    wait_for(lambda: api.request("GET", "/ready")[0] == 200, timeout_s=30, what="api ready")
    assert api.request("GET", "/api/v1/providers")[0] == 401
    token_run = cli("api-token", "--tenant", TENANT_A, env=env)
    assert token_run.returncode == 0, token_run.stderr
    token = token_run.stdout.strip()

    status, created = api.request(
        "POST",
        "/api/v1/providers",
        token,
        provider_body(dovecot, mail_user, isActive=False),
    )
    assert status == 201, created
    one = f"/api/v1/providers/{created['id']}"
    status, result = api.request("POST", f"{one}/test", token)
    assert status == 200 and result["ok"] is True, result
    status, folders = api.request("GET", f"{one}/folders", token)
    assert status == 200 and "INBOX" in [f["name"] for f in folders["folders"]]
    status, activated = api.request("PATCH", one, token, {"isActive": True})
    assert status == 200 and activated["isActive"] is True

    worker = WorkerProcess(env, tmp_path / "worker.log")
    processes.append(worker)
    wait_for(
        lambda: api.request("GET", f"{one}/status", token)[1]["lease"]["live"],
        timeout_s=30,
        what="a worker holding the lease",
    )
    dovecot.deliver(mail_user.name, make_message("over http"))
    assert subjects(wait_for_stream_entries(redis_client, stream, 1, timeout_s=20)) == ["over http"]
    wait_for(
        lambda: api.request("GET", f"{one}/status", token)[1]["folders"][0]["events"] == 1,
        timeout_s=10,
        what="the event counted in the status",
    )

    assert api.request("POST", f"{one}/pause", token)[0] == 202
    wait_for(
        lambda: api.request("GET", f"{one}/status", token)[1]["lease"]["holder"] is None,
        timeout_s=20,
        what="the worker releasing the paused provider",
    )
    assert api.request("POST", f"{one}/resume", token)[0] == 202
    wait_for(
        lambda: api.request("GET", f"{one}/status", token)[1]["lease"]["live"],
        timeout_s=20,
        what="the worker taking it up again",
    )
    assert api.request("DELETE", one, token)[0] == 204
    assert api.request("GET", one, token)[0] == 404

    metrics = urllib.request.urlopen(f"http://127.0.0.1:{api.port}/metrics", timeout=5).read()
    assert b"email_service_api_requests_total" in metrics
    assert worker.terminate() == 0
    assert api.terminate() == 0
    log = (tmp_path / "api.log").read_text()
    assert mail_user.password not in log and JWT_SECRET not in log and token not in log
