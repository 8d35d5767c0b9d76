"""Holds a folder's next batch while Redis is above its water marks (shell).

``PublishGate.wait_for_room`` asks Redis (``XINFO GROUPS``, ``XLEN``, ``INFO memory``) and
``publish.backpressure.decide_pause`` whether a batch may be published; while not, it waits (the
batch held, the cursor unmoved), reports why once through ``on_pause`` (the provider's
status) and the ``email_service_publish_paused`` gauge, and asks again every
``POLL_S``. One gate per worker: its paused state is shared by every folder, so the
hysteresis holds across them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, cast

import redis

from email_service.metrics import Metrics
from email_service.publish.backpressure import Pause, Pressure, WaterMarks, backlog_of, decide_pause
from email_service.publish.publisher import redis_errors_as_publish_failed
from email_service.settings import StreamSettings

logger = logging.getLogger(__name__)

#: Seconds between looks at Redis while paused: resuming within a second costs two small
#: commands a second per waiting folder.
POLL_S = 0.5


def load_pressure(client: redis.Redis[bytes], stream: str) -> Pressure:
    """The stream's busiest group backlog and Redis ``used_memory``.

    Raises ``PublishFailed`` when Redis does not answer, as the publisher does, so the
    provider's status says Redis is unreachable.
    """
    with redis_errors_as_publish_failed("Redis is unreachable"):
        try:
            groups: list[dict[str, Any]] = [
                {_text(k): v for k, v in group.items()}
                for group in cast(Any, client).xinfo_groups(stream)
            ]
            length = int(client.xlen(stream))
        except redis.ResponseError:  # no stream yet: nothing to lag behind
            groups, length = [], 0
        used = int(client.info("memory")["used_memory"])
    return Pressure(backlog_of(groups, length), used)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class PublishGate:
    def __init__(
        self, client: redis.Redis[bytes], streams: StreamSettings, metrics: Metrics
    ) -> None:
        self._client = client
        self._stream = streams.event_stream
        self._marks = WaterMarks(
            high_entries=streams.backlog_high_entries,
            low_entries=streams.backlog_low_entries,
            high_bytes=streams.redis_memory_high_bytes,
            low_bytes=streams.redis_memory_low_bytes,
        )
        self._metrics = metrics
        self._lock = threading.Lock()
        self._paused = False

    def wait_for_room(
        self,
        incoming_bytes: int,
        stop: threading.Event,
        on_pause: Callable[[Pause], None],
        on_resume: Callable[[], None],
    ) -> bool:
        """Return True when the batch may be published, False when ``stop`` was set."""
        reported = False
        while True:
            pressure = load_pressure(self._client, self._stream)
            with self._lock:
                pause = decide_pause(self._paused, pressure, incoming_bytes, self._marks)
                self._paused = pause is not None
            self._metrics.set("email_service_stream_backlog", pressure.backlog)
            self._metrics.set("email_service_redis_used_memory_bytes", pressure.used_memory)
            if pause is None:
                self._metrics.set("email_service_publish_paused", 0, reason="backlog")
                self._metrics.set("email_service_publish_paused", 0, reason="memory")
                if reported:
                    logger.info("publishing resumed")
                    on_resume()
                return True
            self._metrics.set("email_service_publish_paused", 1, reason=pause.reason)
            if not reported:
                logger.warning("publishing paused: %s", pause.detail)
                on_pause(pause)
                reported = True
            if stop.wait(POLL_S):
                return False
