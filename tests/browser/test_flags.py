"""Projects, a project's flags per environment, a flag's rules and experiments: the "Enabled"
switch against the API, a read-only key's refusal, markup in a name, addresses that survive a
reload and back/forward."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import Page, expect

from tests.browser.conftest import Console
from tests.browser.seed import MARKUP_NAME, Shop, unique_flag
from tests.support import Client


def enabled(api: Client, flag: dict[str, Any]) -> bool:
    r = api.get(f"/api/v1/flags/{flag['id']}")
    assert r.status == 200, r.body
    value: bool = r.json["data"]["enabled"]
    return value


def flag_row(page: Page, key: str) -> Any:
    return page.get_by_role("row").filter(has=page.get_by_role("link", name=key, exact=True))


def test_flags_page_shows_each_flag_of_the_environment(console: Console, shop: Shop) -> None:
    page = console.sign_in()
    page.get_by_role("link", name="Shop", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Shop: flags")
    tab = page.get_by_role("navigation", name="Environments").get_by_role("link", name="production")
    expect(tab).to_have_attribute("aria-current", "page")

    row = flag_row(page, "checkout_flow")
    expect(row.locator('[data-label="Name"]')).to_have_text("Checkout flow")
    expect(row.locator('[data-label="Type"]')).to_have_text("string")
    expect(row.locator('[data-label="Default"]')).to_have_text('"classic"')
    expect(row.locator('[data-label="Rules"]')).to_have_text("2")
    expect(row.get_by_role("link", name="Checkout redesign")).to_be_visible()
    expect(row.get_by_role("switch", name="Enabled checkout_flow", exact=True)).to_be_visible()
    banner = flag_row(page, "new_banner")
    expect(banner.locator('[data-label="Default"]')).to_have_text("false")
    expect(banner.locator('[data-label="Running experiment"]')).to_have_text("—")

    # Another environment: the rules and the experiment are production's only.
    page.get_by_role("link", name="staging").click()
    expect(page).to_have_url(re.compile(r"\?env=staging$"))
    expect(flag_row(page, "checkout_flow").locator('[data-label="Rules"]')).to_have_text("0")
    expect(
        flag_row(page, "checkout_flow").locator('[data-label="Running experiment"]')
    ).to_have_text("—")
    console.shot("flags")


def test_flipping_the_enabled_switch_is_what_the_api_then_says(
    console: Console, shop: Shop, api: Client
) -> None:
    flag = unique_flag(api, shop.project_id, "flip")
    page = console.sign_in(route=f"#/projects/{shop.project_id}")
    switch = page.get_by_role("switch", name=f"Enabled {flag['key']}", exact=True)
    expect(switch).to_have_attribute("aria-checked", "false")

    switch.click()
    expect(page.get_by_role("status")).to_have_text(f"{flag['key']} is now enabled.")
    expect(switch).to_have_attribute("aria-checked", "true")
    assert enabled(api, flag) is True

    # The keyboard does the same: Space on the focused switch.
    switch.focus()
    page.keyboard.press("Space")
    expect(page.get_by_role("status")).to_have_text(f"{flag['key']} is now disabled.")
    expect(switch).to_have_attribute("aria-checked", "false")
    expect(switch).to_be_focused()
    assert enabled(api, flag) is False


def test_a_read_only_key_flipping_sees_insufficient_scope_and_the_switch_goes_back(
    console: Console, shop: Shop, api: Client, key_with: Any
) -> None:
    flag = unique_flag(api, shop.project_id, "readonly")
    console.watch.allow(403, f"/api/v1/flags/{flag['id']}")
    page = console.sign_in(key_with("flags:read"), route=f"#/projects/{shop.project_id}")
    switch = page.get_by_role("switch", name=f"Enabled {flag['key']}", exact=True)
    switch.click()
    expect(page.get_by_role("alert")).to_have_text("Insufficient scope")
    expect(switch).to_have_attribute("aria-checked", "false")
    expect(switch).not_to_have_attribute("aria-busy", "true")
    assert enabled(api, flag) is False
    console.shot("insufficient-scope")


def test_a_flag_name_made_of_markup_shows_as_text(console: Console, shop: Shop) -> None:
    page = console.sign_in(route=f"#/projects/{shop.project_id}")
    row = flag_row(page, "markup_name")
    expect(row.locator('[data-label="Name"]')).to_have_text(MARKUP_NAME)
    assert page.locator("#view img").count() == 0
    row.get_by_role("link", name="markup_name").click()
    expect(page.locator(".facts")).to_contain_text(MARKUP_NAME)
    assert page.locator("#view img").count() == 0
    # An alert(1) that ran would be a browser dialog: the page watch fails the test on one.


def test_flag_page_lists_the_rules_in_order_and_the_experiments(
    console: Console, shop: Shop
) -> None:
    flag = shop.flags["checkout_flow"]
    page = console.sign_in(route=f"#/flags/{flag['id']}")
    expect(page.get_by_role("heading", level=1)).to_have_text("checkout_flow")
    expect(page.get_by_role("switch", name="Enabled checkout_flow", exact=True)).to_be_visible()
    rules = page.locator("ol.rules > li")
    expect(rules).to_have_count(2)
    expect(rules.nth(0)).to_contain_text('If country equals "DE"')
    expect(rules.nth(0)).to_contain_text("50% of them")
    expect(rules.nth(0)).to_contain_text('serve "one_page"')
    expect(rules.nth(1)).to_contain_text('If email ends with "@shop.test"')
    expect(rules.nth(1)).to_contain_text('serve "fast_pay"')

    row = page.get_by_role("row").filter(has=page.get_by_role("link", name="Checkout redesign"))
    expect(row.locator('[data-label="Status"]')).to_have_text("running")
    expect(row.locator('[data-label="Variants"]')).to_have_text(
        "control 34% · fast_pay 33% · one_page 33%"
    )
    expect(row.get_by_role("button", name="Stop Checkout redesign")).to_be_visible()
    console.shot("flag")


def test_pages_are_addresses_that_reload_and_back_and_forward_keep(
    console: Console, shop: Shop
) -> None:
    page = console.sign_in()
    page.get_by_role("link", name="Shop", exact=True).click()
    heading = page.get_by_role("heading", level=1)
    expect(heading).to_have_text("Shop: flags")
    page.get_by_role("link", name="checkout_flow", exact=True).click()
    expect(heading).to_have_text("checkout_flow")
    expect(heading).to_be_focused()  # a screen reader hears where it landed
    page.get_by_role("link", name="Checkout redesign").click()
    expect(heading).to_contain_text("Checkout redesign")

    page.go_back()
    expect(heading).to_have_text("checkout_flow")
    page.go_back()
    expect(heading).to_have_text("Shop: flags")
    page.go_forward()
    expect(heading).to_have_text("checkout_flow")
    page.reload()
    expect(heading).to_have_text("checkout_flow")
    crumbs = page.get_by_role("navigation", name="Breadcrumb")
    expect(crumbs).to_have_text(re.compile(r"Projects.*Shop.*checkout_flow"))
    crumbs.get_by_role("link", name="Projects").click()
    expect(heading).to_have_text("Projects")


def test_an_unknown_address_says_so(console: Console, shop: Shop) -> None:
    page = console.sign_in(route="#/nowhere")
    expect(page.get_by_role("heading", level=1)).to_have_text("Page not found")
