"""Operations: health, readiness, metrics, CORS, caching headers, rate limits."""

from __future__ import annotations

from collections.abc import Callable

from tests.e2e.helpers import evaluate, make_flag, make_project
from tests.support import Client, RedisProcess, ServerProcess, eventually


def test_health_and_readiness_answer_without_a_key(a: Client) -> None:
    anon = a.with_token(None)
    assert anon.get("/healthz").json == {"status": "ok"}
    assert anon.get("/readyz").json == {"status": "ready"}


def test_per_user_answers_are_never_cached_by_a_shared_cache(a: Client) -> None:
    project_id = make_project(a)
    r = a.post("/api/v1/flags/evaluate", {"project_id": project_id, "context": {"user_id": "u"}})
    assert r.status == 200, r.body
    assert r.headers["cache-control"] == "private, no-store"


def test_metrics_count_requests_and_conversions(a: Client) -> None:
    project_id = make_project(a)
    make_flag(a, project_id)
    evaluate(a, project_id, "u")
    text = a.with_token(None).get("/metrics").body.decode()
    assert 'edge_http_requests_total{route="POST /api/v1/flags/evaluate",status="200"}' in text
    assert 'route="POST /api/v1/flags",status="201"' in text
    assert f'edge_snapshot_version{{project="{project_id}"}}' in text
    for name in (
        "edge_conversions_total",
        "edge_exposures_total",
        "edge_spool_bytes",
        "edge_sync_reconnects_total",
        "edge_redis_errors_total",
        "edge_http_request_duration_seconds_bucket",
        "edge_exposure_queue_depth",
    ):
        assert f"# TYPE {name.removesuffix('_bucket')}" in text, name  # fmt: skip


def test_cors_preflight_is_answered_without_a_key_for_allowed_origins(
    redis_server: RedisProcess, server_factory: Callable[..., ServerProcess]
) -> None:
    server = server_factory(redis_server.url, EDGE_CORS_ORIGINS="https://app.example")
    anon = server.client(None)
    preflight = {
        "Origin": "https://app.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    for path in ("/api/v1/flags/evaluate", "/api/v1/flags/track", "/ofrep/v1/evaluate/flags"):
        r = anon.request("OPTIONS", path, headers=preflight)
        assert r.status == 200
        assert r.headers["access-control-allow-origin"] == "https://app.example"
    r = anon.request(
        "OPTIONS", "/api/v1/flags/evaluate", headers={**preflight, "Origin": "https://evil.example"}
    )
    assert r.status == 400
    c = server.client()
    project_id = make_project(c)
    r = c.post(
        "/api/v1/flags/evaluate",
        {"project_id": project_id},
        headers={"Origin": "https://app.example"},
    )
    assert r.status == 200 and r.headers["access-control-allow-origin"] == "https://app.example"


def test_rate_limit_answers_429_with_retry_after(
    redis_server: RedisProcess, server_factory: Callable[..., ServerProcess]
) -> None:
    """The answer's shape over HTTP; burst, refill and retry_after themselves are tested on an
    injected clock (tests/integration/test_sync.py), so nothing here depends on timing."""
    server = server_factory(redis_server.url, EDGE_RATE_LIMIT="3")
    c = server.client()
    # A bucket starts full and refills only up to full: a burst of 3 passes, however slow.
    statuses = [c.get("/api/v1/flags/projects").status for _ in range(3)]
    assert statuses == [200, 200, 200]
    # Past it, a 429 comes as soon as a request finds the bucket under one token.
    r = eventually(lambda: (r := c.get("/api/v1/flags/projects")).status == 429 and r)
    assert r.status == 429
    assert r.json["error"] == "Rate limit exceeded" and r.json["retry_after"] >= 1
    assert int(r.headers["retry-after"]) == r.json["retry_after"]
