"""The pure parts of OAuth: state signing, SASL strings, refresh timing, presets, client config."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from email_service.api.problems import ApiProblem
from email_service.api.validation import validate_create, validate_update
from email_service.credentials.oauth_clients import client_config
from email_service.errors import OAuthStateInvalid, PermanentError
from email_service.model import (
    AUTH_OAUTH2,
    ImapEndpoint,
    OAuthFields,
    ProviderConfig,
    Security,
)
from email_service.oauth.sasl import choose_mechanism, error_acknowledgement, initial_response
from email_service.oauth.state import StateClaims, new_code_verifier, sign_state, verify_state
from email_service.oauth.timing import expires_at, needs_refresh, renew_at
from email_service.settings import Settings
from providers.presets import connection_limit, idle_reissue_s, preset_for

KEY = "k" * 40
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def claims(**overrides: object) -> StateClaims:
    values: dict[str, object] = {
        "nonce": "n1",
        "tenant": "acme",
        "provider_id": "p1",
        "redirect_uri": "https://ui.example.com/cb",
        "expires_at_s": 1_000,
    }
    values.update(overrides)
    return StateClaims(**values)  # type: ignore[arg-type]


def test_a_signed_state_verifies_to_its_claims() -> None:
    assert verify_state(sign_state(claims(), KEY), KEY, now_s=999) == claims()


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda s: s + "x", "bad_signature"),
        (lambda s: "A" + s[1:] if s[0] != "A" else "B" + s[1:], "bad_signature"),
        (lambda s: s.replace(".", ""), "malformed"),
        (lambda s: s + ".more", "malformed"),
        (lambda s: "x" * 5000, "malformed"),
        (lambda s: "é" + s, "malformed"),
        (lambda s: s.replace(".", ".é"), "malformed"),
    ],
)
def test_a_changed_state_is_refused(mangle: object, reason: str) -> None:
    state = sign_state(claims(), KEY)
    with pytest.raises(OAuthStateInvalid) as raised:
        verify_state(mangle(state), KEY, now_s=0)  # type: ignore[operator]
    assert raised.value.reason == reason


def test_a_state_signed_with_another_key_is_refused() -> None:
    with pytest.raises(OAuthStateInvalid) as raised:
        verify_state(sign_state(claims(), "other" * 8), KEY, now_s=0)
    assert raised.value.reason == "bad_signature"


def test_a_state_with_another_tenant_cannot_be_forged() -> None:
    payload, signature = sign_state(claims(), KEY).split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["t"] = "evil"
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    with pytest.raises(OAuthStateInvalid):
        verify_state(f"{forged}.{signature}", KEY, now_s=0)


def test_an_expired_state_is_refused() -> None:
    with pytest.raises(OAuthStateInvalid) as raised:
        verify_state(sign_state(claims(expires_at_s=100), KEY), KEY, now_s=100)
    assert raised.value.reason == "expired"


def test_code_verifiers_follow_rfc_7636() -> None:
    verifier = new_code_verifier()
    assert 43 <= len(verifier) <= 128
    assert set(verifier) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
    )


def test_mechanism_follows_the_setting_then_the_capabilities() -> None:
    assert choose_mechanism("oauthbearer", ("AUTH=XOAUTH2",)) == "OAUTHBEARER"
    assert choose_mechanism(None, ("IMAP4REV1", "AUTH=OAUTHBEARER", "AUTH=XOAUTH2")) == "XOAUTH2"
    assert choose_mechanism(None, ("auth=oauthbearer",)) == "OAUTHBEARER"
    with pytest.raises(PermanentError, match="neither"):
        choose_mechanism(None, ("AUTH=PLAIN",))


def test_sasl_messages() -> None:
    assert initial_response("XOAUTH2", "u@x", "tok") == b"user=u@x\x01auth=Bearer tok\x01\x01"
    assert initial_response("OAUTHBEARER", "a,b=c", "tok") == (
        b"n,a=a=2Cb=3Dc,\x01auth=Bearer tok\x01\x01"
    )
    assert error_acknowledgement("OAUTHBEARER") == b"\x01"
    assert error_acknowledgement("XOAUTH2") == b""


def test_tokens_are_renewed_a_margin_before_expiry_but_never_too_early() -> None:
    hour = expires_at(NOW, 3600)
    assert renew_at(hour, NOW, 300) == hour - timedelta(seconds=300)
    short = expires_at(NOW, 8)  # a quarter of its life, not the 300 s margin
    assert renew_at(short, NOW, 300) == short - timedelta(seconds=2)
    assert not needs_refresh(NOW + timedelta(seconds=5), short, NOW, 300)
    assert needs_refresh(NOW + timedelta(seconds=6), short, NOW, 300)
    assert needs_refresh(NOW, None, None, 300)
    assert expires_at(NOW, None) == NOW + timedelta(hours=1)


def test_presets_cap_connections_and_idle() -> None:
    assert connection_limit("google", 50) == 15
    assert connection_limit("google", 5) == 5
    assert connection_limit("imap", 50) == 50
    assert idle_reissue_s("google", 25 * 60) == 9 * 60
    assert idle_reissue_s("unknown-type", 1.0) == 1.0
    assert preset_for("microsoft").token_endpoint("contoso.onmicrosoft.com") == (
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    )


def provider(provider_type: str, oauth: OAuthFields) -> ProviderConfig:
    return ProviderConfig(
        id="p1",
        tenant="acme",
        provider_type=provider_type,
        name="n",
        mailbox="m@x",
        is_active=True,
        status="pending",
        endpoint=ImapEndpoint("imap.gmail.com", 993, Security.TLS),
        auth_type=AUTH_OAUTH2,
        username="m@x",
        folders=("INBOX",),
        lease_fence=0,
        updated_at=NOW,
        oauth=oauth,
    )


def test_google_provider_uses_the_preset_and_the_operators_app() -> None:
    settings = Settings.from_env(
        {
            "EMAIL_SERVICE_OAUTH_GOOGLE_CLIENT_ID": "app-id",
            "EMAIL_SERVICE_OAUTH_GOOGLE_CLIENT_SECRET": "app-secret",
        }
    )
    config = client_config(
        provider("google", OAuthFields()), settings.oauth, None, allow_private_hosts=False
    )
    assert config.client_id == "app-id" and config.client_secret == "app-secret"
    assert config.token_url == "https://oauth2.googleapis.com/token"
    assert config.scopes == ("https://mail.google.com/",)
    assert config.authorize_params == {"access_type": "offline", "prompt": "consent"}
    own = client_config(
        provider("google", OAuthFields(client_id="own")),
        settings.oauth,
        "own-secret",
        allow_private_hosts=False,
    )
    assert (own.client_id, own.client_secret) == ("own", "own-secret")


APP = {
    "EMAIL_SERVICE_OAUTH_GOOGLE_CLIENT_ID": "app-id",
    "EMAIL_SERVICE_OAUTH_GOOGLE_CLIENT_SECRET": "app-secret",
    "EMAIL_SERVICE_OAUTH_MICROSOFT_CLIENT_ID": "app-id",
    "EMAIL_SERVICE_OAUTH_MICROSOFT_CLIENT_SECRET": "app-secret",
}
TENANT_TOKEN_URL = "https://login.tenant.example/token"


@pytest.mark.parametrize(
    ("provider_type", "fields", "stored_secret", "expected"),
    [
        ("google", OAuthFields(), None, ("app-id", "app-secret")),
        ("microsoft", OAuthFields(), None, ("app-id", "app-secret")),
        (  # the preset's own URL written into the column is still the preset's
            "google",
            OAuthFields(token_url="https://oauth2.googleapis.com/token"),
            None,
            ("app-id", "app-secret"),
        ),
        ("google", OAuthFields(token_url=TENANT_TOKEN_URL), None, "oauth_token_url"),
        (
            "google",
            OAuthFields(authorize_url="https://login.tenant.example/auth"),
            None,
            "oauth_authorize_url",
        ),
        ("microsoft", OAuthFields(token_url=TENANT_TOKEN_URL), None, "oauth_token_url"),
        (  # its own id, but the app's secret would go with it: refused too
            "google",
            OAuthFields(token_url=TENANT_TOKEN_URL, client_id="own"),
            None,
            "oauth_token_url",
        ),
        (
            "google",
            OAuthFields(token_url=TENANT_TOKEN_URL, client_id="own"),
            "own-secret",
            ("own", "own-secret"),
        ),
    ],
    ids=[
        "google-preset",
        "microsoft-preset",
        "preset-url-spelled-out",
        "own-token-url",
        "own-authorize-url",
        "microsoft-own-token-url",
        "own-id-without-secret",
        "own-id-and-secret",
    ],
)
def test_the_operators_app_goes_only_to_the_presets_endpoints(
    provider_type: str,
    fields: OAuthFields,
    stored_secret: str | None,
    expected: tuple[str, str] | str,
) -> None:
    settings = Settings.from_env(APP)
    if isinstance(expected, str):
        with pytest.raises(PermanentError, match=expected) as raised:
            client_config(
                provider(provider_type, fields),
                settings.oauth,
                stored_secret,
                allow_private_hosts=False,
            )
        assert "app-secret" not in str(raised.value)
        return
    config = client_config(
        provider(provider_type, fields), settings.oauth, stored_secret, allow_private_hosts=False
    )
    assert (config.client_id, config.client_secret) == expected


def test_a_generic_provider_without_urls_says_what_is_missing() -> None:
    with pytest.raises(PermanentError, match="oauth_authorize_url, oauth_token_url"):
        client_config(
            provider("imap", OAuthFields(client_id="c")),
            Settings.from_env({}).oauth,
            None,
            allow_private_hosts=False,
        )
    with pytest.raises(PermanentError, match="EMAIL_SERVICE_OAUTH_MICROSOFT_CLIENT_ID"):
        client_config(
            provider("microsoft", OAuthFields()),
            Settings.from_env({}).oauth,
            None,
            allow_private_hosts=False,
        )


def test_an_oauth_gmail_provider_needs_no_host_or_password() -> None:
    valid = validate_create(
        {
            "name": "Gmail",
            "mailbox": "a@example.com",
            "username": "a@example.com",
            "providerType": "google",
            "authType": "oauth2",
        }
    )
    assert (valid.host, valid.port, valid.security) == ("imap.gmail.com", 993, Security.TLS)
    assert valid.password is None and valid.auth_type == AUTH_OAUTH2


def test_oauth_create_fields_are_checked_and_named() -> None:
    with pytest.raises(ApiProblem) as raised:
        validate_create(
            {
                "name": "X",
                "mailbox": "a@example.com",
                "username": "a",
                "providerType": "yahoo",
                "authType": "oauth2",
                "password": "p",
                "oauthTokenUrl": "ftp://x",
                "oauthScopes": ["ok", "bad scope"],
            }
        )
    fields = {f.field for f in raised.value.fields}
    assert fields == {
        "providerType",
        "password",
        "oauthTokenUrl",
        "oauthScopes",
        "host",
        "port",
        "security",
    }
    with pytest.raises(ApiProblem) as raised:
        validate_create(
            {"name": "X", "mailbox": "a@b.c", "username": "a", "host": "h.example.com",
             "port": 993, "security": "tls", "password": "p", "oauthClientId": "c"}
        )  # fmt: skip
    assert [f.field for f in raised.value.fields] == ["oauthClientId"]


def test_login_fields_cannot_be_changed_by_patch() -> None:
    with pytest.raises(ApiProblem) as raised:
        validate_update({"authType": "oauth2"})
    assert raised.value.fields[0].message == "set only when the provider is created"


@pytest.mark.parametrize("value", [{}, [], 1, None, True])
def test_login_fields_of_the_wrong_type_are_named(value: object) -> None:
    with pytest.raises(ApiProblem) as raised:
        validate_create({"providerType": value, "authType": value, "oauthScopes": value})
    named = {f.field for f in raised.value.fields}
    assert {"providerType", "authType", "oauthScopes"} <= named
