"""OFREP through the real OpenFeature SDK and OFREP provider, and the protocol's edges."""

from __future__ import annotations

from typing import Any

from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

from tests.e2e.helpers import evaluate, make_flag, start_experiment
from tests.support import Client, ServerProcess


def world(c: Client) -> dict[str, Any]:
    project_id = start_experiment(c)["project_id"]  # its flag checkout_flow, split 50/50
    ruled = make_flag(c, project_id, key="banner", default_value="none")
    c.patch(f"/api/v1/flags/{ruled['id']}", {"enabled": True})
    rule = c.post(
        f"/api/v1/flags/{ruled['id']}/rules",
        {"environment": "production", "value": "de",
         "conditions": [{"attribute": "country", "operator": "equals", "value": "DE"}]},
    ).json["data"]  # fmt: skip
    make_flag(c, project_id, key="off", flag_type="boolean", default_value=False)
    return {"project_id": project_id, "rule_id": rule["id"]}


def client_for(server: ServerProcess, token: str = "kr_live_abc123def456") -> Any:
    provider = OFREPProvider(
        f"http://127.0.0.1:{server.port}",
        headers_factory=lambda: {"Authorization": f"Bearer {token}"},
    )
    api.set_provider(provider, domain=f"edge-{server.port}-{token[-6:]}")
    return api.get_client(domain=f"edge-{server.port}-{token[-6:]}")


def test_openfeature_sdk_resolves_split_targeting_and_missing_flags(
    servers: tuple[ServerProcess, ServerProcess], a: Client
) -> None:
    w = world(a)
    client = client_for(servers[0])
    ctx = EvaluationContext("usr_123", {"project_id": w["project_id"], "country": "DE"})

    split = client.get_string_details("checkout_flow", "fallback", ctx)
    expected = evaluate(a, w["project_id"], "usr_123")["checkout_flow"]["value"]
    assert (split.value, split.reason) == (expected, Reason.SPLIT)
    assert split.variant == ("control" if expected == "old" else "treatment")

    ruled = client.get_string_details("banner", "fallback", ctx)
    assert (ruled.value, ruled.reason, ruled.variant) == (
        "de",
        Reason.TARGETING_MATCH,
        w["rule_id"],
    )

    off = client.get_boolean_details("off", True, ctx)
    assert (off.value, off.reason, off.variant) == (False, Reason.DISABLED, "default")

    missing = client.get_string_details("nope", "fallback", ctx)
    assert (missing.value, missing.error_code) == ("fallback", ErrorCode.FLAG_NOT_FOUND)

    no_key = client.get_string_details("checkout_flow", "fallback", EvaluationContext(
        None, {"project_id": w["project_id"]}))  # fmt: skip
    assert (no_key.value, no_key.error_code) == ("fallback", ErrorCode.TARGETING_KEY_MISSING)


def test_a_key_restricted_to_one_project_needs_no_project_in_the_context(
    servers: tuple[ServerProcess, ServerProcess], a: Client
) -> None:
    w = world(a)
    token = a.post(
        "/api/v1/keys",
        {"name": "browser", "scopes": ["flags:evaluate"], "project_ids": [w["project_id"]]},
    ).json["data"]["token"]
    client = client_for(servers[0], token)
    details = client.get_string_details("banner", "x", EvaluationContext("u", {"country": "DE"}))
    assert (details.value, details.reason) == ("de", Reason.TARGETING_MATCH)


def test_bulk_answers_every_flag_with_an_etag_and_304_only_for_the_same_answer(a: Client) -> None:
    w = world(a)
    body = {"context": {"targetingKey": "u1", "project_id": w["project_id"], "country": "DE"}}
    r = a.post("/ofrep/v1/evaluate/flags", body)
    assert r.status == 200
    flags = {f["key"]: f for f in r.json["flags"]}
    assert set(flags) == {"checkout_flow", "banner", "off"}
    assert flags["banner"]["reason"] == "TARGETING_MATCH"
    etag = r.headers["etag"]
    assert r.headers["cache-control"] == "private, no-store"
    again = a.post("/ofrep/v1/evaluate/flags", body, headers={"If-None-Match": etag})
    assert (again.status, again.body) == (304, b"")
    other = {"context": {**body["context"], "country": "FR"}}
    r2 = a.post("/ofrep/v1/evaluate/flags", other, headers={"If-None-Match": etag})
    assert r2.status == 200 and r2.headers["etag"] != etag


def test_protocol_errors_have_ofrep_codes(a: Client) -> None:
    w = world(a)
    path = "/ofrep/v1/evaluate/flags/banner"
    r = a.post(path, raw=b"{oops")
    assert (r.status, r.json["errorCode"], r.json["key"]) == (400, "PARSE_ERROR", "banner")
    r = a.post(path, {"context": "x"})
    assert (r.status, r.json["errorCode"]) == (400, "INVALID_CONTEXT")
    r = a.post(path, {"context": {"targetingKey": "u"}})  # no project: the key is unrestricted
    assert (r.status, r.json["errorCode"]) == (400, "INVALID_CONTEXT")
    ctx = {"project_id": w["project_id"], "environment": "moon", "targetingKey": "u"}
    r = a.post(path, {"context": ctx})
    assert (r.status, r.json["errorCode"]) == (400, "INVALID_CONTEXT")
    r = a.post("/ofrep/v1/evaluate/flags/nope", {"context": {"project_id": w["project_id"]}})
    assert (r.status, r.json["errorCode"]) == (404, "FLAG_NOT_FOUND")
    assert a.with_token(None).post(path, {"context": {}}).status == 401
