"""A crawler of the portal's pages, as a logged-in person sees them: links, forms, buttons."""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import lxml.html
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

# Never followed by the crawler: leaving the session, assets, one-time download links.
SKIPPED_PREFIXES = (
    "/deconnexion", "/dsfr/", "/static/", "/vendor/", "/telechargement/", "/api/v1/",
)  # fmt: skip


@dataclass
class FormSeen:
    """A form of a page: where it goes, how, its fields and their current values."""

    page: str
    action: str
    method: str
    fields: list[tuple[str, str, str]]  # (name, kind, value): kind is the input type or tag
    button: str

    @property
    def has_inputs(self) -> bool:
        """True when the form asks for something (more than its CSRF token and a button)."""
        return any(kind != "hidden" for _, kind, _ in self.fields)


@dataclass
class Crawl:
    """What a crawl of one person's pages met."""

    pages: dict[str, int] = field(default_factory=dict)  # path -> status
    texts: dict[str, str] = field(default_factory=dict)  # path -> what a person reads there
    forms: list[FormSeen] = field(default_factory=list)
    broken: list[tuple[str, str, int]] = field(default_factory=list)  # (from, to, status)


def local(href: str | None, base: str) -> str | None:
    """The portal path *href* designates from the page *base*, or None when it leaves it."""
    if not href or href.startswith(("#", "mailto:", "tel:", "javascript:")):
        return None
    parts = urlsplit(href)
    if parts.scheme and parts.netloc not in ("localhost", "filr.test"):
        return None
    path = parts.path or urlsplit(base).path
    if not path.startswith("/"):
        return None
    return path + (f"?{parts.query}" if parts.query else "")


def forms_of(page: str, html: str) -> list[FormSeen]:
    """Every form of *html*, with the values a browser would send."""
    tree = lxml.html.fromstring(html)
    found = []
    for form in tree.iter("form"):
        action = local(form.get("action"), page) or page
        fields: list[tuple[str, str, str]] = []
        for element in form.iter("input", "select", "textarea"):
            name = element.get("name")
            if not name:
                continue
            if element.tag == "input":
                kind = (element.get("type") or "text").lower()
                if kind in ("checkbox", "radio") and element.get("checked") is None:
                    fields.append((name, kind, ""))  # present, not ticked
                    continue
                fields.append((name, kind, element.get("value") or ""))
            elif element.tag == "select":
                options = element.findall(".//option")
                chosen = [o for o in options if o.get("selected") is not None] or options[:1]
                fields.append((name, "select", chosen[0].get("value", "") if chosen else ""))
            else:
                fields.append((name, "textarea", element.text or ""))
        buttons = [b.text_content().strip() for b in form.iter("button")]
        found.append(
            FormSeen(
                page,
                action,
                (form.get("method") or "get").lower(),
                fields,
                buttons[0] if buttons else "",
            )
        )
    return found


def links_of(page: str, html: str) -> list[str]:
    """Every portal path linked from *html*."""
    tree = lxml.html.fromstring(html)
    paths = [local(a.get("href"), page) for a in tree.iter("a")]
    return [p for p in paths if p is not None]


def crawl(client: FlaskClient, start: str = "/", limit: int = 80) -> Crawl:
    """Follow every link from *start* (GET only), recording statuses and forms."""
    seen = Crawl()
    queue: deque[tuple[str, str]] = deque([("", start)])
    while queue and len(seen.pages) < limit:
        origin, path = queue.popleft()
        if path in seen.pages or path.startswith(SKIPPED_PREFIXES):
            continue
        response = client.get(path, buffered=True)  # streamed exports end within the request
        seen.pages[path] = response.status_code
        if response.status_code >= 400:
            seen.broken.append((origin, path, response.status_code))
            continue
        if response.status_code in (301, 302, 303):
            target = local(response.headers.get("Location"), path)
            if target:
                queue.append((path, target))
            continue
        if not response.mimetype.startswith("text/html"):
            continue
        html = response.get_data(as_text=True)
        seen.texts[path] = visible_text(response)
        seen.forms.extend(forms_of(path, html))
        for target in links_of(path, html):
            if target not in seen.pages:
                queue.append((path, target))
    return seen


def visible_text(response: TestResponse) -> str:
    """The text a person reads on the page (scripts and styles left out)."""
    tree = lxml.html.fromstring(response.get_data(as_text=True))
    for element in list(tree.iter("script", "style", "code", "pre")):
        element.drop_tree()
    return re.sub(r"\s+", " ", tree.text_content())
