import pytest

from email_service.errors import InvalidSettings
from email_service.settings import VARIABLES, Settings


def test_defaults_when_environment_is_empty() -> None:
    settings = Settings.from_env({}, default_worker_id="w1")
    assert settings.store.database_url == "sqlite:///email-service.db"
    assert settings.streams.event_stream == "workflow:events:global"
    # ours, not the consumer's own workflow:events:global:dlq (DESIGN.md section 3)
    assert settings.streams.dlq_stream == "email-service:dead-letters:workflow:events:global"
    assert settings.imap.max_emails_per_sync == 5
    assert settings.imap.connection_timeout_s == 10
    assert settings.imap.tls_reject_unauthorized is True
    assert settings.process.worker_id == "w1"
    assert settings.streams.redis_url is None


@pytest.mark.parametrize(
    ("env", "attr", "expected"),
    [
        (
            {"DATABASE_URL": "postgres://u@h/db"},
            "store.database_url",
            "postgresql+psycopg://u@h/db",
        ),
        (
            {"DATABASE_URL": "postgresql://u@h/db"},
            "store.database_url",
            "postgresql+psycopg://u@h/db",
        ),
        (
            {"EMAIL_SERVICE_EVENT_STREAM": "s1"},
            "streams.dlq_stream",
            "email-service:dead-letters:s1",
        ),
        ({"IMAP_SOCKET_KEEPALIVE": "false"}, "imap.socket_keepalive", False),
        ({"IMAP_SOCKET_KEEPALIVE": "Yes"}, "imap.socket_keepalive", True),
        ({"EMAIL_SERVICE_SECRET_KEYS": "a, b,"}, "store.secret_keys", ("a", "b")),
        ({"IMAP_OAUTH_AUTH_MECHANISM": "XOAUTH2"}, "imap.oauth_auth_mechanism", "xoauth2"),
        ({"IMAP_TIMER_JITTER_PCT": "0.25"}, "reconnect.timer_jitter_pct", 0.25),
    ],
    ids=[
        "postgres-scheme",
        "postgresql-scheme",
        "dlq-follows-stream",
        "bool-false",
        "bool-yes",
        "keys-split",
        "choice-lowercased",
        "fraction",
    ],
)
def test_values_are_parsed(env: dict[str, str], attr: str, expected: object) -> None:
    group, name = attr.split(".")
    assert getattr(getattr(Settings.from_env(env), group), name) == expected


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"IMAP_CONNECTION_TIMEOUT_MS": "ten"}, "IMAP_CONNECTION_TIMEOUT_MS"),
        ({"IMAP_MAX_EMAILS_PER_SYNC": "-1"}, "IMAP_MAX_EMAILS_PER_SYNC"),
        ({"IMAP_SOCKET_KEEPALIVE": "maybe"}, "IMAP_SOCKET_KEEPALIVE"),
        ({"IMAP_RECONNECT_JITTER_PCT": "1.5"}, "IMAP_RECONNECT_JITTER_PCT"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        (
            {"IMAP_RECONNECT_MAX_MS": "500", "IMAP_RECONNECT_BASE_MS": "1000"},
            "IMAP_RECONNECT_MAX_MS",
        ),
        ({"EMAIL_SERVICE_DLQ_STREAM": "workflow:events:global:dlq"}, "EMAIL_SERVICE_DLQ_STREAM"),
        (
            {"EMAIL_SERVICE_EVENT_STREAM": "s1", "EMAIL_SERVICE_DLQ_STREAM": "s1"},
            "EMAIL_SERVICE_DLQ_STREAM",
        ),
        ({"IMAP_MAX_ATTACHMENT_COUNT": "0"}, "IMAP_MAX_ATTACHMENT_COUNT"),
    ],
    ids=[
        "not-a-number",
        "below-minimum",
        "bad-bool",
        "fraction-above-one",
        "redis-no-scheme",
        "unsupported-database",
        "max-below-base",
        "dlq-is-the-consumers",
        "dlq-is-the-event-stream",
        "attachment-count-zero",
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(InvalidSettings, match=names):
        Settings.from_env(env)


def test_secret_values_are_not_echoed_in_errors_or_repr() -> None:
    with pytest.raises(InvalidSettings) as caught:
        Settings.from_env({"DATABASE_URL": "mysql://user:hunter2@h/db"})
    assert "hunter2" not in str(caught.value)
    settings = Settings.from_env(
        {"REDIS_URL": "redis://:pw-secret@h:6379/0", "EMAIL_SERVICE_SECRET_KEYS": "key-secret"}
    )
    assert "pw-secret" not in repr(settings)
    assert "key-secret" not in repr(settings)


def test_missing_required_values_say_how_to_fix() -> None:
    settings = Settings.from_env({})
    with pytest.raises(InvalidSettings, match="REDIS_URL is not set"):
        settings.require_redis_url()
    with pytest.raises(InvalidSettings, match="keys generate"):
        settings.require_secret_keys()


def test_every_variable_has_help_and_unique_name() -> None:
    names = [v.env for v in VARIABLES]
    assert len(names) == len(set(names))
    assert all(v.help for v in VARIABLES)
