"""The browser fixtures themselves: the CSP watcher reports what a page's scripts break."""

from __future__ import annotations

import pytest

from tests.browser.conftest import WatchedPage

pytestmark = pytest.mark.browser


def test_watcher_reports_an_inline_style_attribute_and_screenshots_add_none(
    watched_page: WatchedPage,
) -> None:
    page = watched_page.page
    # Given the log-in page with the caret in a field, screenshotted as the journeys do
    page.goto("/connexion")
    page.focus("#email")
    watched_page.screenshot("focused-field")
    assert watched_page.problems == []
    # When a script sets an inline style attribute, which the portal's CSP refuses
    page.evaluate("document.body.setAttribute('style', 'color: red')")
    # Then the watcher reports it by directive
    with pytest.raises(AssertionError, match="style-src-attr"):
        watched_page.assert_clean()


def test_axe_core_checks_every_page_and_a_violation_fails_the_journey(
    watched_page: WatchedPage,
) -> None:
    page = watched_page.page
    # Given the log-in page, checked by axe-core as it loads: clean
    page.goto("/connexion")
    watched_page.assert_clean()
    assert any(url.endswith("/connexion") for url in watched_page.checked)
    # When the browser loads a page with an image without a text alternative
    page.route(
        "**/page-inaccessible",
        lambda route: route.fulfill(
            content_type="text/html",
            body="<!doctype html><html lang='fr'><head><title>x</title></head>"
            "<body><main><h1>x</h1><img src='/dsfr/favicon/favicon.svg'></main></body></html>",
        ),
    )
    page.goto("/page-inaccessible")
    # Then the journey fails, naming the rule
    with pytest.raises(AssertionError, match="axe image-alt"):
        watched_page.assert_clean()
