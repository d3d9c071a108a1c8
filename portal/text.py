"""Text helpers shared by the password policy and the deposit lists."""

from __future__ import annotations

import unicodedata


def fold(text: str) -> str:
    """Lower case without accents ("Équipe" -> "equipe")."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))
