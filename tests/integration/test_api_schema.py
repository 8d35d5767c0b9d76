"""Property-based run of schemathesis against the served OpenAPI document.

Every documented operation gets generated requests (valid and invalid) with a valid token,
sent over HTTP to the real app (PostgreSQL, Redis, Dovecot behind a real provider); every
response must be a non-5xx that matches the document's status codes, content types,
headers and schemas. Half of the generated provider ids are swapped for a real provider's
id, so the handlers past the 404 run too (test, folders and live status connect to Dovecot).

Host names are resolved from a fixed table (IP literals as themselves, other names not at
all), so generated hosts never cause DNS traffic, and the harness's providers are only ever
reached on the loopback Dovecot.
"""

from __future__ import annotations

import ipaddress
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis import checks as core_checks
from schemathesis.specs.openapi import checks as openapi_checks

from email_service.devserver.dovecot import DovecotServer
from email_service.settings import Settings
from tests.conftest import MailUser
from tests.integration.api_harness import ApiHarness, api_environ, provider_body

pytestmark = pytest.mark.integration

#: Examples per operation: enough to reach past validation, bounded to keep the run short.
MAX_EXAMPLES = 40

CHECKS = [
    core_checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.negative_data_rejection,
    openapi_checks.ignored_auth,
]


async def literal_addresses_only(host: str, port: int) -> list[str]:
    if host == "imap.example.com":  # the document's example
        return ["192.0.2.10"]
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        return []


@pytest.fixture
def api(environ: dict[str, str]) -> Iterator[ApiHarness]:
    settings = Settings.from_env(
        api_environ(
            environ,
            EMAIL_SERVICE_API_IMAP_CALLS_PER_MINUTE="45",
            EMAIL_SERVICE_OAUTH_STATE_SECRET="state-secret-for-the-schema-run-0123456789",
            EMAIL_SERVICE_OAUTH_REDIRECT_URIS="https://ui.example.com/oauth/done",
        )
    )
    harness = ApiHarness(settings, resolver=literal_addresses_only)
    yield harness
    harness.close()


@dataclass(frozen=True)
class RealProviders:
    #: Followed by test, folders and status calls: never changed or deleted by the run.
    reachable: str
    #: The target of generated PATCH and DELETE calls, so they cannot redirect the other.
    scratch: str


@pytest.fixture
def real_providers(
    api: ApiHarness, dovecot: DovecotServer, mail_user: MailUser, tenant: str
) -> RealProviders:
    dovecot.create_folder(mail_user.name, "Sent")
    ids = []
    for _ in range(2):
        body = provider_body(dovecot, mail_user, folders=["INBOX", "Sent"])
        reply = api.call("POST", "/api/v1/providers", tenant=tenant, json_body=body)
        assert reply.status == 201, reply
        ids.append(reply.json()["id"])
    return RealProviders(reachable=ids[0], scratch=ids[1])


@pytest.fixture
def api_schema(api: ApiHarness) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{api.base_url}/api/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@hypothesis_settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api_matches_its_openapi_document(
    case: schemathesis.Case, api: ApiHarness, real_providers: RealProviders, tenant: str
) -> None:
    generated = (case.path_parameters or {}).get("providerId")
    if (
        isinstance(generated, str)
        and 0 < len(generated) <= 64
        and zlib.crc32(generated.encode()) % 2
    ):
        mutating = case.method in {"PATCH", "DELETE"}
        case.path_parameters["providerId"] = (
            real_providers.scratch if mutating else real_providers.reachable
        )
    case.call_and_validate(headers={"Authorization": f"Bearer {api.token(tenant)}"}, checks=CHECKS)
