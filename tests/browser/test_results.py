"""An experiment's results page: the table holds the API's figures, formatted and never
recomputed; the lift chart and the rate chart draw one mark per variant (per day, once there is a
series); figures the API adds later (sequential, adjusted, value) show up when present; and the
page refreshes itself quietly."""

from __future__ import annotations

import copy
import re
from typing import Any

import orjson
from playwright.sync_api import Locator, Page, Route, expect

from tests.browser import formats as fmt
from tests.browser.conftest import Console
from tests.browser.seed import (
    Shop,
    experiment_path,
    expose_and_convert,
    make_experiment,
    read_experiment,
    unique_flag,
)
from tests.support import Client

REFRESH_MS = 10_000  # js/views/experiment.js
# What a browser tells a page when its tab goes to the background or comes back.
VISIBLE = """() => {
  Object.defineProperty(document, "visibilityState", {value: "STATE", configurable: true});
  document.dispatchEvent(new Event("visibilitychange"));
}"""


def results_route(experiment: dict[str, Any]) -> str:
    return f"#/flags/{experiment['flag_id']}/experiments/{experiment['id']}"


def cell(row: Locator, label: str) -> Locator:
    return row.locator(f'[data-label="{label}"]')


def expect_figure(row: Locator, label: str, point: str, interval: str) -> None:
    """A cell with a figure above its interval, or a single dash when neither is defined."""
    if point == fmt.DASH and interval == fmt.DASH:
        expect(cell(row, label)).to_have_text(fmt.DASH)
    else:
        expect(cell(row, label).locator(".fig")).to_have_text(point)
        expect(cell(row, label).locator(".ci")).to_have_text(interval)


def expect_table(page: Page, results: dict[str, Any]) -> None:
    rows = page.locator("table.results tbody tr")
    expect(rows).to_have_count(len(results["variants"]))
    for i, v in enumerate(results["variants"]):
        row = rows.nth(i)
        expect(cell(row, "Variant").locator("code")).to_have_text(v["key"])
        expect(cell(row, "Exposures")).to_have_text(fmt.count(v["exposures"]))
        expect(cell(row, "Conversions")).to_have_text(fmt.count(v["conversions"]))
        expect(cell(row, "Conversion rate")).to_have_text(fmt.rate(v["conversion_rate"]))
        expect_figure(
            row,
            "Absolute lift",
            fmt.points(v["absolute_lift"]),
            fmt.points_interval(v["absolute_lift_ci"]),
        )
        expect_figure(
            row,
            "Relative lift",
            fmt.relative(v["relative_lift"]),
            fmt.relative_interval(v["relative_lift_ci"]),
        )
        expect(cell(row, "p-value")).to_have_text(fmt.p_value(v["p_value"]))
        expect(cell(row, "Adjusted p-value")).to_have_text(fmt.p_value(v.get("p_value_adjusted")))
        sequential = v.get("sequential") or {}
        expect_figure(
            row,
            "Sequential CI",
            fmt.points_interval(sequential.get("absolute_lift_ci")),
            fmt.relative_interval(sequential.get("relative_lift_ci")),
        )
        expect(cell(row, "Sequential p-value").locator(".fig")).to_have_text(
            fmt.p_value(sequential.get("p_value"))
        )
        expect(cell(row, "Chance to beat control")).to_have_text(
            fmt.chance(v["chance_to_beat_control"])
        )


def marks(page: Page, chart: str) -> list[tuple[str, float]]:
    """(variant, the API figure the mark stands for) of every mark of a chart."""
    found: list[tuple[str, float]] = page.eval_on_selector_all(
        f"svg.{chart} circle.mark",
        "els => els.map(e => [e.closest('g[data-variant]').dataset.variant, +e.dataset.value])",
    )
    return [(key, value) for key, value in found]


def test_results_page_shows_the_apis_figures_and_draws_both_charts(
    console: Console, shop: Shop, api: Client
) -> None:
    experiment = read_experiment(api, shop.experiment)
    results = experiment["results"]
    page = console.sign_in(route=results_route(experiment))
    expect(page.get_by_role("heading", level=1)).to_contain_text("Checkout redesign")
    expect(page.get_by_role("heading", level=1)).to_contain_text("running")
    expect_table(page, results)
    facts = page.locator(".facts")
    expect(facts).to_contain_text(f"Converting users{fmt.count(experiment['conversions'])}")
    expect(facts).to_contain_text(f"SRM p-value{fmt.p_value(results['srm']['p_value'])}")
    expect(page.locator(".banner.warning")).to_have_count(0)  # no SRM here

    lift = page.get_by_role("img", name=re.compile(r"^Absolute lift over control"))
    expect(lift).to_be_visible()
    others = [v for v in results["variants"] if v["key"] != results["control"]]
    assert marks(page, "lift-chart") == [(v["key"], v["absolute_lift"]) for v in others]
    expect(page.locator("svg.lift-chart .ci-fixed")).to_have_count(len(others))
    expect(page.locator("svg.lift-chart text.axis-label")).to_have_text(
        "Absolute lift over control (percentage points)"
    )
    expect(page.get_by_role("list", name="Lift chart legend")).to_contain_text("95% interval")

    rate = page.get_by_role("img", name=re.compile(r"^Cumulative conversion rate per variant"))
    expect(rate).to_be_visible()
    assert marks(page, "rate-chart") == [
        (v["key"], v["conversion_rate"]) for v in results["variants"]
    ]
    legend = page.get_by_role("list", name="Rate chart legend").get_by_role("listitem")
    expect(legend).to_have_text([v["key"] for v in results["variants"]])
    console.shot("results")


def test_without_a_series_the_rate_chart_shows_each_variants_current_rate(
    console: Console, shop: Shop, api: Client
) -> None:
    """What a proxy without the series route (an older one, during a rolling upgrade) answers:
    a 404 in the API's shape; the chart then draws one point per variant, at the results'
    rate, and says so."""
    experiment = read_experiment(api, shop.experiment)
    console.watch.allow(404, experiment_path(experiment) + "/series")  # Chromium logs it
    console.page.route(
        re.compile(r".*/series(\?.*)?$"),
        lambda route: route.fulfill(
            status=404, content_type="application/json", body=b'{"error": "Not found"}'
        ),
    )
    page = console.sign_in(route=results_route(experiment))
    note = page.locator("[data-chart=rate] .note")
    expect(note).to_have_text(re.compile("does not serve the daily series yet"))
    variants = experiment["results"]["variants"]
    assert marks(page, "rate-chart") == [(v["key"], v["conversion_rate"]) for v in variants]
    expect(page.locator("svg.rate-chart path.line")).to_have_count(0)
    expect(page.locator("svg.rate-chart text.tick", has_text="Now")).to_have_count(1)


def series_body(results: dict[str, Any]) -> dict[str, Any]:
    """Three days in API.md's shape ("Daily series"), the last one equal to the results."""
    days = []
    for date, share in (("2026-03-01", 0.3), ("2026-03-02", 0.6)):
        variants = []
        for v in results["variants"]:
            exposures = max(1, round(v["exposures"] * share))
            conversions = round(v["conversions"] * share * share)
            variants.append(
                {
                    "key": v["key"],
                    "exposures": exposures,
                    "conversions": conversions,
                    "conversion_rate": conversions / exposures,
                    "absolute_lift": None,
                    "sequential_absolute_lift_ci": None,
                }
            )
        days.append({"date": date, "variants": variants})
    last = [
        {k: v[k] for k in ("key", "exposures", "conversions", "conversion_rate", "absolute_lift")}
        for v in results["variants"]
    ]
    days.append({"date": "2026-03-04", "variants": last})
    return {"data": {"goal": results["goal"], "days": days}}


def test_rate_chart_draws_each_day_of_a_series(console: Console, shop: Shop, api: Client) -> None:
    experiment = read_experiment(api, shop.experiment)
    body = series_body(experiment["results"])

    def fulfill(route: Route) -> None:
        route.fulfill(status=200, content_type="application/json", body=orjson.dumps(body))

    console.page.route(re.compile(r".*/series(\?.*)?$"), fulfill)
    page = console.sign_in(route=results_route(experiment))
    expect(page.locator("svg.rate-chart path.line")).to_have_count(len(experiment["variants"]))
    expected = [
        (v["key"], day["variants"][i]["conversion_rate"])
        for i, v in enumerate(experiment["variants"])
        for day in body["data"]["days"]
    ]
    assert marks(page, "rate-chart") == expected
    ticks = page.locator("svg.rate-chart text.tick").all_text_contents()
    assert {"Mar 1", "Mar 2", "Mar 4"} <= set(ticks)
    expect(page.locator("[data-chart=rate] .note")).to_be_hidden()
    expect(page.get_by_role("img", name=re.compile("3 days, Mar 1 to Mar 4"))).to_be_visible()


def test_rate_chart_plots_the_servers_own_series(console: Console, shop: Shop, api: Client) -> None:
    r = api.get(experiment_path(shop.experiment) + "/series")
    assert r.status == 200, r.body
    days = r.json["data"]["days"]
    page = console.sign_in(route=results_route(shop.experiment))
    expect(page.locator("svg.rate-chart")).to_be_visible()
    expected = [
        (v["key"], day["variants"][i]["conversion_rate"])
        for i, v in enumerate(shop.experiment["variants"])
        for day in days
    ]
    assert marks(page, "rate-chart") == expected
    expect(page.locator("[data-chart=rate] .note")).to_be_hidden()


def with_later_figures(experiment: dict[str, Any]) -> dict[str, Any]:
    """The experiment as a proxy with analysis settings, sequential figures, a correction and a
    value goal answers it (API.md): made-up numbers in the documented places."""
    e = copy.deepcopy(experiment)
    e["analysis"] = {"alpha": 0.1, "sequential_tuning": 5000, "correction": "holm-bonferroni"}
    results = e["results"]
    results["srm"] = {"p_value": 0.00042, "warning": True}
    for i, v in enumerate(results["variants"]):
        control = v["key"] == results["control"]
        v["p_value_adjusted"] = None if control else 0.0123 * (i + 1)
        v["sequential"] = (
            None
            if control
            else {
                "absolute_lift_ci": [-0.0412 * i, 0.0977 * i],
                "relative_lift_ci": [-0.3125 * i, 0.85 * i],
                "p_value": 0.2345 * i,
                "p_value_adjusted": 0.4 * i,
            }
        )
        v["value"] = {
            "sum": 1234.5 * (i + 1),
            "mean": 6.17 * (i + 1),
            "variance": 3.3,
            "absolute_lift": None if control else 1.25 * i,
            "absolute_lift_ci": None if control else [-0.5, 3.0],
            "relative_lift": None if control else 0.2 * i,
            "relative_lift_ci": None if control else [-0.1, 0.5],
            "p_value": None if control else 0.03,
            "p_value_adjusted": None if control else 0.06,
            "sequential": None,
        }
    return e


def test_results_show_the_figures_the_api_adds_later_when_it_sends_them(
    console: Console, shop: Shop, api: Client
) -> None:
    later = with_later_figures(read_experiment(api, shop.experiment))
    console.page.route(
        re.compile(rf".*/experiments/{later['id']}(\?.*)?$"),
        lambda route: route.fulfill(
            status=200, content_type="application/json", body=orjson.dumps({"data": later})
        ),
    )
    page = console.sign_in(route=results_route(later))
    results = later["results"]
    expect_table(page, results)
    rows = page.locator("table.results tbody tr")
    for i, v in enumerate(results["variants"]):
        if v["sequential"]:
            expect(cell(rows.nth(i), "Sequential p-value").locator(".ci")).to_have_text(
                "adjusted " + fmt.p_value(v["sequential"]["p_value_adjusted"])
            )
    expect(page.locator(".banner.warning")).to_contain_text("Sample ratio mismatch")
    expect(page.locator(".banner.warning")).to_contain_text("SRM p-value 0.0004")
    facts = page.locator(".facts")
    expect(facts).to_contain_text("Alpha0.1")
    expect(facts).to_contain_text("Correctionholm-bonferroni")
    expect(facts).to_contain_text("Sequential tuning5,000")

    # The lift chart draws the sequential interval too, at the experiment's level.
    others = len(results["variants"]) - 1
    expect(page.locator("svg.lift-chart .ci-seq")).to_have_count(others)
    expect(page.get_by_role("list", name="Lift chart legend")).to_contain_text(
        "Sequential 90% interval"
    )

    values = page.locator("table.values tbody tr")
    expect(values).to_have_count(len(results["variants"]))
    expect(cell(values.nth(0), "Sum")).to_have_text("1,234.50")
    expect(cell(values.nth(1), "Mean")).to_have_text("12.34")
    expect(cell(values.nth(1), "Absolute lift").locator(".fig")).to_have_text("+1.25")
    expect(cell(values.nth(1), "Absolute lift").locator(".ci")).to_have_text(
        f"[{fmt.MINUS}0.50, +3.00]"
    )
    expect(cell(values.nth(1), "p-value")).to_have_text("0.0300")
    expect(cell(values.nth(1), "Adjusted p-value")).to_have_text("0.0600")
    console.shot("later-figures")


def test_results_refresh_quietly_and_keep_the_focus(
    console: Console, shop: Shop, api: Client
) -> None:
    flag = unique_flag(api, shop.project_id, "refresh")
    experiment = make_experiment(api, flag, "Live numbers", [("control", "a", 50), ("b", "b", 50)])
    assert api.post(experiment_path(experiment) + "/start").status == 200
    expose_and_convert(api, shop.project_id, flag, experiment, 40)

    page = console.page
    page.clock.install()
    console.sign_in(route=results_route(experiment))
    rows = page.locator("table.results tbody tr")
    expect_table(page, read_experiment(api, experiment)["results"])
    stop = page.get_by_role("button", name="Stop Live numbers")
    stop.focus()
    page.evaluate("window.stillTheSamePage = true")

    expose_and_convert(api, shop.project_id, flag, experiment, 80)  # 40 more users
    after = read_experiment(api, experiment)["results"]
    page.clock.run_for(REFRESH_MS + 500)
    expect(cell(rows.nth(0), "Exposures")).to_have_text(
        fmt.count(after["variants"][0]["exposures"])
    )
    expect_table(page, after)
    expect(stop).to_be_focused()
    assert page.evaluate("window.stillTheSamePage") is True
    expect(page.locator("#status")).to_have_text("")  # quiet: nothing announced

    # The Refresh button does the same at once, and says so.
    expose_and_convert(api, shop.project_id, flag, experiment, 100)
    page.get_by_role("button", name="Refresh", exact=True).click()
    expect(page.get_by_role("status")).to_have_text(re.compile(r"^Results updated at "))
    expect_table(page, read_experiment(api, experiment)["results"])


def test_a_hidden_tab_does_not_refresh_until_it_is_seen_again(console: Console, shop: Shop) -> None:
    page = console.page
    page.clock.install()
    console.sign_in(route=results_route(shop.experiment))
    expect(page.locator("svg.rate-chart circle.mark").first).to_be_visible()
    asked: list[str] = []
    path = experiment_path(shop.experiment)
    page.on("request", lambda r: asked.append(r.url) if path in r.url else None)

    page.evaluate(VISIBLE.replace("STATE", "hidden"))
    page.clock.run_for(3 * REFRESH_MS)
    assert asked == []

    # Seen again after more than the refresh interval: it refreshes at once.
    with page.expect_request(lambda r: path in r.url):
        page.evaluate(VISIBLE.replace("STATE", "visible"))


def test_another_goal_is_read_and_a_bad_one_gets_the_apis_details(
    console: Console, shop: Shop, api: Client
) -> None:
    page = console.sign_in(route=results_route(shop.experiment))
    goal = page.get_by_label("Goal")
    goal.fill("signup")  # a goal nobody tracked: zero conversions, every figure as the API says
    goal.press("Enter")
    expect(page).to_have_url(re.compile(r"\?goal=signup$"))
    r = api.get(experiment_path(shop.experiment) + "?goal=signup")
    expect(page.locator("table.results caption")).to_have_text("Results for goal “signup”")
    expect_table(page, r.json["data"]["results"])

    console.watch.allow(422, experiment_path(shop.experiment))
    console.watch.allow(422, experiment_path(shop.experiment) + "/series")
    goal = page.get_by_label("Goal")
    goal.fill("no spaces")
    goal.press("Enter")
    refused = api.get(experiment_path(shop.experiment) + "?goal=no%20spaces")
    assert refused.status == 422
    alert = page.get_by_role("alert")
    expect(alert.locator(".alert-message")).to_have_text(refused.json["error"])
    expect(alert.locator(".alert-details")).to_have_text(f"goal: {refused.json['details']['goal']}")
    # The field stays, so the goal can be put right.
    page.get_by_label("Goal").fill("conversion")
    page.get_by_label("Goal").press("Enter")
    expect(page.locator("table.results caption")).to_have_text("Results for goal “conversion”")


def test_focus_moved_into_the_page_while_it_loads_stays_there(console: Console, shop: Shop) -> None:
    """The heading takes the focus after a move, unless the user already went on: here the
    results are held back until the goal field has the focus."""
    held: list[Route] = []
    pattern = re.compile(rf".*/experiments/{shop.experiment['id']}(\?.*)?$")
    console.page.route(pattern, lambda route: held.append(route))
    page = console.sign_in(route=results_route(shop.experiment))
    goal = page.get_by_label("Goal")
    goal.focus()
    while not held:
        page.wait_for_timeout(20)
    held[0].continue_()
    page.unroute(pattern)
    expect(page.locator("table.results")).to_be_visible()
    expect(goal).to_be_focused()
