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
