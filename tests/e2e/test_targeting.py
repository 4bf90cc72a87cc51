"""Targeting rules, rollouts and segments through the HTTP API, seen by both processes."""

from __future__ import annotations

from typing import Any

from tests.e2e.helpers import evaluate, make_experiment, make_flag, make_project
from tests.support import Client, eventually


def rule(client: Client, flag_id: str, **body: Any) -> dict[str, Any]:
    r = client.post(f"/api/v1/flags/{flag_id}/rules", {"environment": "production", **body})
    assert r.status == 201, r.body
    created: dict[str, Any] = r.json["data"]
    return created


def test_rules_apply_in_position_order_once_the_flag_is_enabled(a: Client, b: Client) -> None:
    project_id = make_project(a)
    flag = make_flag(a, project_id, key="banner", default_value="none")
    fid = flag["id"]
    de = rule(a, fid, conditions=[{"attribute": "country", "operator": "equals", "value": "DE"}],
              value="de-banner")  # fmt: skip
    pro = rule(a, fid, conditions=[{"attribute": "plan", "operator": "in", "value": ["pro"]}],
               value="pro-banner", position=0)  # fmt: skip
    ctx = {"country": "DE", "plan": "pro"}
    # Disabled flag: rules do not apply.
    assert evaluate(a, project_id, "u1", **ctx)["banner"] == {"value": "none", "rule_id": None}
    assert a.patch(f"/api/v1/flags/{fid}", {"enabled": True}).status == 200
    expected = {"value": "pro-banner", "rule_id": pro["id"]}
    for c in (a, b):
        eventually(lambda c=c: evaluate(c, project_id, "u1", **ctx)["banner"] == expected)
    assert evaluate(a, project_id, "u1", country="DE")["banner"] == {
        "value": "de-banner",
        "rule_id": de["id"],
    }
    # Reorder: the DE rule first.
    assert a.patch(f"/api/v1/flags/{fid}/rules/{de['id']}", {"position": -1}).status == 422
    assert a.patch(f"/api/v1/flags/{fid}/rules/{pro['id']}", {"position": 5}).status == 200
    assert evaluate(a, project_id, "u1", **ctx)["banner"]["rule_id"] == de["id"]
    listed = a.get(f"/api/v1/flags/{fid}/rules?environment=production").json["data"]
    assert [r["id"] for r in listed] == [de["id"], pro["id"]]
    # Disable the DE rule, then delete the pro rule.
    a.patch(f"/api/v1/flags/{fid}/rules/{de['id']}", {"enabled": False})
    assert evaluate(a, project_id, "u1", **ctx)["banner"]["rule_id"] == pro["id"]
    assert a.delete(f"/api/v1/flags/{fid}/rules/{pro['id']}").status == 204
    assert evaluate(a, project_id, "u1", **ctx)["banner"] == {"value": "none", "rule_id": None}


def test_rule_value_must_have_the_flags_type(a: Client) -> None:
    project_id = make_project(a)
    flag = make_flag(a, project_id, key="limit", flag_type="number", default_value=1)
    r = a.post(
        f"/api/v1/flags/{flag['id']}/rules",
        {"environment": "production", "conditions": [], "value": "ten"},
    )
    assert r.status == 422 and "value" in r.json["details"]
    r = a.post(
        f"/api/v1/flags/{flag['id']}/rules",
        {"environment": "production", "conditions": [{"attribute": "v", "operator": "regex",
                                                       "value": "(a"}], "value": 2},
    )  # fmt: skip
    assert r.status == 422 and "conditions[0]" in r.json["details"]


def test_percentage_rollout_admits_a_stable_share_and_raising_it_only_adds(a: Client) -> None:
    project_id = make_project(a)
    flag = make_flag(a, project_id, key="new_ui", flag_type="boolean", default_value=False)
    a.patch(f"/api/v1/flags/{flag['id']}", {"enabled": True})
    r = rule(a, flag["id"], conditions=[], value=True, percentage=30)
    users = [f"user-{i}" for i in range(600)]
    admitted_30 = {u for u in users if evaluate(a, project_id, u)["new_ui"]["value"]}
    assert 120 < len(admitted_30) < 240  # 30% of 600 is 180; binomial sd is about 11
    assert evaluate(a, project_id, None)["new_ui"]["value"] is False  # no user_id: no rollout
    a.patch(f"/api/v1/flags/{flag['id']}/rules/{r['id']}", {"percentage": 60})
    admitted_60 = {u for u in users if evaluate(a, project_id, u)["new_ui"]["value"]}
    assert admitted_30 < admitted_60


def test_segment_changes_reach_every_flag_that_uses_it(a: Client, b: Client) -> None:
    project_id = make_project(a)
    seg = a.post(
        "/api/v1/flags/segments",
        {"project_id": project_id, "name": "beta", "match_type": "any",
         "rules": [{"key": "email", "operator": "ends_with", "value": "@corp.com"}]},
    )  # fmt: skip
    assert seg.status == 201, seg.body
    seg_id = seg.json["data"]["id"]
    flags = [make_flag(a, project_id, key=k, flag_type="boolean", default_value=False)
             for k in ("f1", "f2")]  # fmt: skip
    for f in flags:
        a.patch(f"/api/v1/flags/{f['id']}", {"enabled": True})
        rule(a, f["id"], conditions=[], value=True, segment_id=seg_id)
    ctx = {"email": "x@corp.com"}
    assert all(v["value"] for v in evaluate(a, project_id, "u", **ctx).values())
    a.patch(
        f"/api/v1/flags/segments/{seg_id}",
        {"rules": [{"key": "email", "operator": "ends_with", "value": "@beta.com"}]},
    )
    for c in (a, b):
        eventually(
            lambda c=c: not any(v["value"] for v in evaluate(c, project_id, "u", **ctx).values())
        )
    assert a.delete(f"/api/v1/flags/segments/{seg_id}").status == 409


def test_running_experiment_takes_precedence_over_rules_then_rules_return(a: Client) -> None:
    project_id = make_project(a)
    flag = make_flag(a, project_id)
    a.patch(f"/api/v1/flags/{flag['id']}", {"enabled": True})
    r = rule(a, flag["id"], conditions=[], value="ruled")
    e = make_experiment(a, flag["id"])  # a draft, split "old"/"new"
    base = f"/api/v1/flags/{flag['id']}/experiments/{e['id']}"
    assert evaluate(a, project_id, "u")["checkout_flow"]["rule_id"] == r["id"]
    a.post(f"{base}/start")
    assert evaluate(a, project_id, "u")["checkout_flow"]["value"] in ("old", "new")
    assert evaluate(a, project_id, None)["checkout_flow"]["rule_id"] == r["id"]
    a.post(f"{base}/stop")
    assert evaluate(a, project_id, "u")["checkout_flow"] == {"value": "ruled", "rule_id": r["id"]}
