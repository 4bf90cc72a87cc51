"""Starting and stopping an experiment from its flag's page: always after a confirmation (which
Cancel and Escape refuse), and the API agrees with what the page then shows."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.conftest import Console
from tests.browser.seed import (
    Shop,
    experiment_path,
    make_experiment,
    read_experiment,
    unique_flag,
)
from tests.support import Client


def test_starting_an_experiment_asks_first_then_the_api_has_it_running(
    console: Console, shop: Shop, api: Client
) -> None:
    flag = unique_flag(api, shop.project_id, "tour")
    experiment = make_experiment(
        api, flag, "Onboarding tour", [("control", "off", 50), ("tour", "on", 50)]
    )
    page = console.sign_in(route=f"#/flags/{flag['id']}")
    start = page.get_by_role("button", name="Start Onboarding tour")
    start.click()
    dialog = page.get_by_role("dialog", name="Start “Onboarding tour”?")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    console.shot("confirm-start")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert read_experiment(api, experiment)["status"] == "draft"

    start.click()
    dialog.get_by_role("button", name="Start experiment").click()
    expect(page.get_by_role("status")).to_have_text("Experiment “Onboarding tour” started.")
    assert read_experiment(api, experiment)["status"] == "running"
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name="Onboarding tour"))
    expect(row.locator('[data-label="Status"]')).to_have_text("running")
    # The page was drawn again; the keyboard focus moved to the button that took Start's place.
    stop = page.get_by_role("button", name="Stop Onboarding tour")
    expect(stop).to_be_focused()

    # The project's page names it as the flag's running experiment.
    page.goto(console.url + f"#/projects/{shop.project_id}")
    flag_row = page.get_by_role("row").filter(has=page.get_by_role("link", name=flag["key"]))
    expect(flag_row.get_by_role("link", name="Onboarding tour")).to_be_visible()


def test_stopping_by_keyboard_escape_refuses_and_enter_on_the_confirmation_stops(
    console: Console, shop: Shop, api: Client
) -> None:
    flag = unique_flag(api, shop.project_id, "stop")
    experiment = make_experiment(api, flag, "Price test", [("control", "a", 50), ("b", "b", 50)])
    assert api.post(experiment_path(experiment) + "/start").status == 200
    page = console.sign_in(route=f"#/flags/{flag['id']}")
    stop = page.get_by_role("button", name="Stop Price test")
    stop.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Stop “Price test”?")
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(stop).to_be_focused()
    assert read_experiment(api, experiment)["status"] == "running"

    page.keyboard.press("Enter")
    expect(dialog).to_be_visible()
    page.keyboard.press("Tab")  # from Cancel to the confirmation
    expect(dialog.get_by_role("button", name="Stop experiment")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text("Experiment “Price test” stopped.")
    assert read_experiment(api, experiment)["status"] == "stopped"
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name="Price test"))
    expect(row.locator('[data-label="Status"]')).to_have_text("stopped")
    expect(row.get_by_role("button")).to_have_count(0)  # a stopped experiment has no next step


def test_a_refused_start_shows_the_apis_reason(console: Console, shop: Shop, api: Client) -> None:
    """Two drafts on one flag and environment: the second cannot start while the first runs."""
    flag = unique_flag(api, shop.project_id, "twice")
    first = make_experiment(api, flag, "First", [("control", "a", 50), ("b", "b", 50)])
    second = make_experiment(api, flag, "Second", [("control", "a", 50), ("b", "b", 50)])
    page = console.sign_in(route=f"#/flags/{flag['id']}")
    expect(page.get_by_role("button", name="Start Second")).to_be_visible()
    assert api.post(experiment_path(first) + "/start").status == 200
    console.watch.allow(409, experiment_path(second) + "/start")
    page.get_by_role("button", name="Start Second").click()
    page.get_by_role("dialog").get_by_role("button", name="Start experiment").click()
    expect(page.get_by_role("alert")).to_have_text(
        "Another experiment is already running on this flag"
    )
