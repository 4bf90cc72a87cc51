"""Signing in and out: the "API key" field, Enter, what sessionStorage keeps, and the API's own
words for a key it refuses or a key that may not read projects."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import Console
from tests.browser.seed import Shop
from tests.support import BOOTSTRAP


def test_signing_in_with_enter_lists_the_projects_and_keeps_the_key_for_the_tab(
    console: Console, shop: Shop
) -> None:
    page = console.open()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_label("API key")).to_be_focused()
    console.shot("signin")
    assert console.session_key() is None

    field = page.get_by_label("API key")
    field.fill(BOOTSTRAP)
    field.press("Enter")

    expect(page.get_by_role("heading", name="Projects", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="Shop", exact=True)).to_be_visible()
    assert console.session_key() == BOOTSTRAP
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    console.shot("projects")

    page.reload()  # the key lives as long as the tab
    expect(page.get_by_role("link", name="Shop", exact=True)).to_be_visible()


def test_a_wrong_key_sees_the_apis_message_and_nothing_is_kept(console: Console) -> None:
    console.watch.allow(401, "/api/v1/flags/projects")
    page = console.sign_in("kr_live_" + "x" * 43)
    expect(page.get_by_role("alert")).to_have_text("Invalid or missing API key")
    expect(page.get_by_label("API key")).to_be_visible()
    assert console.session_key() is None
    assert page.evaluate("sessionStorage.length") == 0
    expect(page.get_by_role("button", name="Sign out")).to_be_hidden()
    console.shot("wrong-key")


def test_signing_out_forgets_the_key(console: Console, shop: Shop) -> None:
    page = console.sign_in()
    expect(page.get_by_role("link", name="Shop", exact=True)).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API key")).to_be_visible()
    expect(page.get_by_role("status")).to_have_text("Signed out.")
    assert page.evaluate("sessionStorage.length") == 0
    page.reload()
    expect(page.get_by_label("API key")).to_be_visible()


def test_an_evaluate_only_key_is_taken_but_sees_insufficient_scope(
    console: Console, shop: Shop, key_with: Any
) -> None:
    """A flags:evaluate key is valid (403, not 401) but may read nothing: not the projects, not
    a project's flags, so no switch to flip either; each page says so in the API's words."""
    key = key_with("flags:evaluate")
    console.watch.allow(403, "/api/v1/flags/projects")
    console.watch.allow(403, f"/api/v1/flags/projects/{shop.project_id}")
    console.watch.allow(403, "/api/v1/flags")
    page = console.sign_in(key)
    expect(page.get_by_role("alert")).to_have_text("Insufficient scope")
    assert console.session_key() == key

    page.goto(console.url + f"#/projects/{shop.project_id}")
    expect(page.get_by_role("alert")).to_have_text("Insufficient scope")
    expect(page.get_by_role("switch")).to_have_count(0)
    console.shot("evaluate-key")
