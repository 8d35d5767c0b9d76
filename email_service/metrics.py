"""Process counters and gauges, rendered in the Prometheus text format (core, thread-safe)."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable

#: Metric name -> help text. Every metric the service exports is listed here.
METRICS: dict[str, tuple[str, str]] = {
    "email_service_events_published_total": ("counter", "Events added to the event stream"),
    "email_service_dead_letters_total": (
        "counter",
        "Entries added to the dead-letter stream, by reason "
        "(unparseable, unfetchable, event_build_failed, event_too_large, no_usable_sender, "
        "contract_violation)",
    ),
    "email_service_contract_violations_total": (
        "counter",
        "Events that broke the consumer's contract and became dead letters instead, by the "
        "failing field (a bug of ours to report: the consumer would have dropped them)",
    ),
    "email_service_gmail_copies_total": (
        "counter",
        "Gmail copies of a message already published from another label folder (recorded, "
        "not published)",
    ),
    "email_service_ingress_skips_total": (
        "counter",
        "Parts left out of published events by a size cap, by reason (ingressSkipReasons and "
        "ingressTruncations)",
    ),
    "email_service_listener_errors_total": ("counter", "Listener failures, by kind"),
    "email_service_oauth_refreshes_total": (
        "counter",
        "OAuth access token refreshes, by outcome (ok, failed, reauth_required, superseded)",
    ),
    "email_service_oauth_renewals_total": (
        "counter",
        "Connections that logged in again because their access token was about to expire",
    ),
    "email_service_listeners": ("gauge", "IMAP connections (listeners and pollers), by state"),
    "email_service_leases_held": ("gauge", "Provider leases this worker holds"),
    "email_service_publish_paused": (
        "gauge",
        "1 while this worker holds batches because Redis is above a water mark, by reason "
        "(backlog, memory)",
    ),
    "email_service_stream_backlog": (
        "gauge",
        "Entries of the event stream the busiest consumer group has not read or acknowledged",
    ),
    "email_service_redis_used_memory_bytes": ("gauge", "Redis used_memory, as last seen"),
    "email_service_api_requests_total": ("counter", "API requests, by method, route and status"),
    "email_service_http_connections_refused_total": (
        "counter",
        "HTTP connections closed at once because of a connection limit, by reason (total, per_ip)",
    ),
    "email_service_http_header_timeouts_total": (
        "counter",
        "HTTP connections closed because the request head did not arrive in time",
    ),
    "email_service_http_bad_requests_total": (
        "counter",
        "HTTP requests that could not be parsed (bad request line, header too large), by status",
    ),
    "email_service_api_imap_calls_total": (
        "counter",
        "API calls that opened an IMAP connection (test, folders, live status), by kind and "
        "outcome (ok, failed, rate_limited)",
    ),
}


class Metrics:
    """Labelled counters and gauges; listener threads update, the HTTP handler renders."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
        self._collectors: list[Callable[[], None]] = []

    def add_collector(self, collect: Callable[[], None]) -> None:
        """Call ``collect`` before every ``render``: it sets gauges that are read when
        scraped rather than pushed, so they are never older than the scrape."""
        with self._lock:
            self._collectors.append(collect)

    def add(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._values[name]
            series[key] = series.get(key, 0.0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._values[name][key] = value

    def value(self, name: str, **labels: str) -> float:
        with self._lock:
            return self._values[name].get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> str:
        with self._lock:
            collectors = list(self._collectors)
        for collect in collectors:
            collect()
        lines: list[str] = []
        with self._lock:
            for name, (kind, help_text) in METRICS.items():
                lines.append(f"# HELP {name} {help_text}")
                lines.append(f"# TYPE {name} {kind}")
                for labels, value in sorted(self._values[name].items()):
                    label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                    lines.append(
                        f"{name}{{{label_text}}} {value:g}" if label_text else f"{name} {value:g}"
                    )
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
