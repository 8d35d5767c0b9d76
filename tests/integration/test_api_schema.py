"""Property-based runs of schemathesis against the served OpenAPI document.

Every documented operation gets generated requests (valid and invalid) with a valid token,
sent over HTTP to the real app (PostgreSQL, Redis, Dovecot behind a real provider); every
response must be a non-5xx that matches the document's status codes, content types,
headers and schemas. Half of the generated provider ids are swapped for a real provider's
id, so the handlers past the 404 run too (test, folders, live status and downloads connect
to Dovecot; a download's folder becomes INBOX then).

A second, stateful run follows the document's OpenAPI links: it creates providers and then
gets, changes, tests, lists, pauses, resyncs and deletes them by the ids the API answered,
pages through the list with ``nextCursor``, and checks every response the same way.

Host names are resolved from a fixed table (IP literals as themselves, other names not at
all), so generated hosts never cause DNS traffic, and the harness's providers are only ever
reached on the loopback Dovecot.
"""

from __future__ import annotations

import ipaddress
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

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

#: Scenarios of the stateful run, and calls in each (create first, then what its links reach).
STATEFUL_EXAMPLES = 25
STATEFUL_STEPS = 10

CHECKS = [
    core_checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.negative_data_rejection,
    openapi_checks.ignored_auth,
]
#: Answers that name a failing mail server (documented 502 and 504), not a fault of ours.
UPSTREAM_ERRORS = {(502, "imap_failed"), (504, "imap_timeout")}


def not_our_server_error(ctx: Any, response: Any, case: schemathesis.Case) -> bool | None:
    """``not_a_server_error``, except that a provider the stateful run created with a
    generated host has no mail server: listing its folders is a 502 or 504 saying so."""
    if response.status_code in (502, 504) and (
        (response.status_code, response.json().get("error")) in UPSTREAM_ERRORS
    ):
        return None
    return core_checks.not_a_server_error(ctx, response, case)


#: The stateful run sends only what the links produce: no negative data to reject.
STATEFUL_CHECKS = [not_our_server_error] + [
    check
    for check in CHECKS
    if check not in (core_checks.not_a_server_error, openapi_checks.negative_data_rejection)
]


async def literal_addresses_only(host: str, port: int) -> list[str]:
    if host == "imap.example.com":  # the document's example
        return ["192.0.2.10"]
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        return []


def schema_run_api(environ: dict[str, str], **extra: str) -> ApiHarness:
    settings = Settings.from_env(
        api_environ(
            environ,
            EMAIL_SERVICE_OAUTH_STATE_SECRET="state-secret-for-the-schema-run-0123456789",
            EMAIL_SERVICE_OAUTH_REDIRECT_URIS="https://ui.example.com/oauth/done",
            **extra,
        )
    )
    return ApiHarness(settings, resolver=literal_addresses_only)


@pytest.fixture
def api(environ: dict[str, str]) -> Iterator[ApiHarness]:
    harness = schema_run_api(environ, EMAIL_SERVICE_API_IMAP_CALLS_PER_MINUTE="45")
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
        if "folder" in case.path_parameters:  # a download: past the folder check, to Dovecot
            case.path_parameters["folder"] = "INBOX"
    case.call_and_validate(headers={"Authorization": f"Bearer {api.token(tenant)}"}, checks=CHECKS)


@pytest.fixture
def quick_api(environ: dict[str, str]) -> Iterator[ApiHarness]:
    """The API with short IMAP time bounds: generated providers point at hosts that never
    answer (192.0.2.10 for the document's example), and each test call waits that long."""
    harness = schema_run_api(
        environ,
        EMAIL_SERVICE_API_IMAP_CALLS_PER_MINUTE="600",
        EMAIL_SERVICE_API_IMAP_TIMEOUT_MS="1000",
        IMAP_CONNECTION_TIMEOUT_MS="500",
    )
    yield harness
    harness.close()


def test_api_statefully_follows_its_links(quick_api: ApiHarness, tenant: str) -> None:
    """Scenarios start with a create (or a list) and follow the links of its answer: get,
    change, test, list folders, status, pause, resume, resync, reconnect and delete by the
    id the API answered, and the next page by ``nextCursor``.

    The run generates create requests without ``oauthClientId``: schemathesis would read it
    as a reference to an "OauthClient" resource that nothing produces, and then never start
    a scenario with a create. (The stateless run above sends it.)
    """
    document = quick_api.call("GET", "/api/openapi.json").json()
    del document["components"]["schemas"]["ProviderCreate"]["properties"]["oauthClientId"]
    schema = schemathesis.openapi.from_dict(document)
    schema.config.update(base_url=quick_api.base_url)
    # Only the document's own links: inferred ones (a list's first id) make what a scenario
    # draws depend on what earlier ones left behind.
    schema.config.phases.stateful.inference.algorithms = []
    token = quick_api.token(tenant)
    answered: set[tuple[str, int]] = set()

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, object]:
            return {"headers": {"Authorization": f"Bearer {token}"}}

        def after_call(self, response: Any, case: schemathesis.Case) -> None:
            super().after_call(response, case)
            answered.add((case.operation.label, response.status_code))

        def validate_response(  # type: ignore[override]
            self, response: object, case: schemathesis.Case, **kwargs: object
        ) -> None:
            case.validate_response(response, checks=STATEFUL_CHECKS)  # type: ignore[arg-type]

        def teardown(self) -> None:  # every scenario starts from no providers
            for provider in quick_api.parts.providers.list_providers(tenant):
                quick_api.parts.providers.remove_provider(provider.id, tenant)

    Machine.run(
        settings=hypothesis_settings(
            max_examples=STATEFUL_EXAMPLES,
            stateful_step_count=STATEFUL_STEPS,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        )
    )
    # The links were followed: calls by the ids the API answered found the providers (which
    # operations a run reaches varies with the answers, so only a spread is required).
    one = "/api/v1/providers/{providerId}"
    found = {label for label, status in answered if one in label and status not in (401, 404)}
    assert f"GET {one}" in found and len(found) >= 4, "\n".join(map(str, sorted(answered)))
