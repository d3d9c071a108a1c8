"""Text helpers shared by the password policy and the deposit lists."""

from __future__ import annotations

import unicodedata


def fold(text: str) -> str:
    """Lower case without accents ("Équipe" -> "equipe")."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def header_text(value: str | None) -> str | None:
    """A request header as the text the client sent (UTF-8), not as WSGI hands it over.

    PEP 3333 gives header values as Latin-1 decodings of the raw bytes, so a UTF-8 user agent
    ("Hélène") would be stored and shown as mojibake ("HÃ©lÃ¨ne"). Bytes that are not UTF-8
    keep their Latin-1 reading, the only other one a client may mean.
    """
    if not value:
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:  # not Latin-1 (a test client's str) or not UTF-8: already text
        return value
