"""The metrics registry's text exposition, and query/body parsing helpers."""

from __future__ import annotations

import pytest

from reconciler.api.server._query import merge_patch, parse_label_selector
from reconciler.api.server._status import HttpError
from reconciler.metrics import CapstanMetrics, Registry


def test_registry_renders_prometheus_text():
    registry = Registry()
    counter = registry.counter("jobs_total", "Jobs.", labels=("result",))
    gauge = registry.gauge("depth", "Depth.", labels=("queue",))
    histogram = registry.histogram("latency_seconds", "Latency.", buckets=(0.1, 1.0))
    counter.inc(1, "ok")
    counter.inc(2, "ok")
    counter.inc(1, 'we"ird\n')
    gauge.set(5, "a")
    gauge.dec(2, "a")
    histogram.observe(0.05)
    histogram.observe(0.5)
    histogram.observe(3)
    text = registry.render()
    assert "# TYPE jobs_total counter\n" in text
    assert 'jobs_total{result="ok"} 3\n' in text
    assert 'jobs_total{result="we\\"ird\\n"} 1\n' in text
    assert 'depth{queue="a"} 3\n' in text
    assert 'latency_seconds_bucket{le="0.1"} 1\n' in text
    assert 'latency_seconds_bucket{le="1"} 2\n' in text
    assert 'latency_seconds_bucket{le="+Inf"} 3\n' in text
    assert "latency_seconds_sum 3.55\n" in text
    assert "latency_seconds_count 3\n" in text
    with pytest.raises(ValueError, match="only goes up"):
        counter.inc(-1, "ok")
    with pytest.raises(ValueError, match="labels"):
        counter.inc(1)
    with pytest.raises(ValueError, match="already registered"):
        registry.gauge("depth", "again")


def test_capstan_metrics_have_the_documented_names():
    metrics = CapstanMetrics.create()
    metrics.sync_total.inc(1, "applied")
    metrics.workqueue_depth.set(3, "deployment")
    metrics.reconcile_duration.observe(0.01, "deployment")
    metrics.scheduler_attempts.inc(1, "scheduled")
    metrics.node_connected.set(1, "n1")
    metrics.node_push.observe(0.2)
    metrics.sync_duration.observe(1.5)
    metrics.store_write.observe(0.003)
    text = metrics.registry.render()
    for name in (
        "capstan_sync_duration_seconds",
        "capstan_sync_total",
        "capstan_workqueue_depth",
        "capstan_reconcile_duration_seconds",
        "capstan_scheduler_attempts_total",
        "capstan_node_connected",
        "capstan_node_push_seconds",
        "capstan_store_revision",
        "capstan_store_write_seconds",
        "capstan_http_requests_total",
        "capstan_http_request_duration_seconds",
    ):
        assert f"# TYPE {name} " in text
    assert 'capstan_node_connected{node="n1"} 1' in text
    # Two sets never share state.
    assert CapstanMetrics.create().sync_total.value("applied") == 0


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("a=b", {"a": "b"}, True),
        ("a=b", {"a": "c"}, False),
        ("a!=b", {}, True),
        ("a in (x, y)", {"a": "y"}, True),
        ("a notin (x,y),b", {"a": "z", "b": "1"}, True),
        ("!a", {"a": "1"}, False),
        ("example.com/a=1,b==2", {"example.com/a": "1", "b": "2"}, True),
    ],
)
def test_label_selector_syntax(text, labels, expected):
    selector = parse_label_selector(text)
    assert selector is not None
    assert selector.matches(labels) is expected


@pytest.mark.parametrize("text", ["a in (b", "a in b)", "a,,b", "Bad Key=1", "a=b c", "x" * 5000])
def test_bad_label_selectors_are_400(text):
    with pytest.raises(HttpError) as info:
        parse_label_selector(text)
    assert info.value.code == 400


def test_merge_patch_rfc7386():
    target = {"a": "b", "c": {"d": "e", "f": "g"}}
    patch = {"a": "z", "c": {"f": None}, "n": [1]}
    assert merge_patch(target, patch) == {"a": "z", "c": {"d": "e"}, "n": [1]}
    assert merge_patch({"a": 1}, ["x"]) == ["x"]
