"""Every page on a laptop and on a phone (390x844), light and dark: nothing wider than the screen,
text and chart marks that keep their contrast in either theme, and a screenshot of each page."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Console
from tests.browser.seed import Shop
from tests.support import BOOTSTRAP

SCREENS = {
    "laptop": {"viewport": {"width": 1280, "height": 900}},
    "phone": {
        "viewport": {"width": 390, "height": 844},
        "is_mobile": True,
        "has_touch": True,
    },
}


def luminance(css: str) -> float:
    """WCAG's relative luminance of a computed `rgb(r, g, b)` colour."""
    channels = [int(c) / 255 for c in re.findall(r"\d+", css)[:3]]
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def computed(page: Page, selector: str, prop: str) -> str:
    value: str = page.eval_on_selector(selector, f"e => getComputedStyle(e)[{prop!r}]")
    return value


def fits(page: Page) -> None:
    """Nothing makes the page scroll sideways (a wide table scrolls inside its own box)."""
    scroll, screen = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
    assert scroll <= screen, (scroll, screen)


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("screen", ["laptop", "phone"])
def test_every_page_fits_the_screen_and_reads_in_both_themes(
    console_factory: Any, shop: Shop, screen: str, scheme: str
) -> None:
    console: Console = console_factory(color_scheme=scheme, **SCREENS[screen])
    page = console.open()
    expect(page.get_by_label("API key")).to_be_visible()
    fits(page)
    console.shot("signin")
    field = page.get_by_label("API key")
    field.fill(BOOTSTRAP)
    field.press("Enter")
    expect(page.get_by_role("link", name="Shop", exact=True)).to_be_visible()
    fits(page)
    console.shot("projects")

    page.get_by_role("link", name="Shop", exact=True).click()
    expect(page.get_by_role("switch", name="Enabled checkout_flow", exact=True)).to_be_visible()
    fits(page)
    console.shot("flags")

    page.get_by_role("link", name="checkout_flow", exact=True).click()
    expect(page.locator("ol.rules > li")).to_have_count(2)
    fits(page)
    console.shot("flag")

    page.get_by_role("link", name="Checkout redesign").click()
    expect(page.locator("svg.rate-chart circle.mark")).to_have_count(3)
    fits(page)
    console.shot("results")

    surface = computed(page, ".chart", "backgroundColor")
    body = computed(page, "body", "backgroundColor")
    assert (luminance(body) < 0.05) is (scheme == "dark"), body
    text = computed(page, "main h1", "color")
    assert contrast(text, body) >= 7, (text, body)
    label = computed(page, "svg.lift-chart text.label", "fill")
    tick = computed(page, "svg.lift-chart text.tick", "fill")
    assert contrast(label, surface) >= 4.5, (label, surface)
    assert contrast(tick, surface) >= 4.5, (tick, surface)
    for selector in ("svg.lift-chart circle.mark", "svg.rate-chart circle.mark"):
        for fill in page.eval_on_selector_all(
            selector, "els => els.map(e => getComputedStyle(e).fill)"
        ):
            assert contrast(fill, surface) >= 3, (selector, fill, surface)
