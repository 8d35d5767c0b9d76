"""Gauges read when /metrics is rendered."""

from __future__ import annotations

from email_service.metrics import Metrics


def test_collectors_set_gauges_at_each_render() -> None:
    metrics = Metrics()
    states = {"idle": 1}
    metrics.add_collector(
        lambda: metrics.set("email_service_listeners", states["idle"], state="idle")
    )
    assert 'email_service_listeners{state="idle"} 1\n' in metrics.render()
    states["idle"] = 7
    assert 'email_service_listeners{state="idle"} 7\n' in metrics.render()
