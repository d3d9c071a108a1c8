"""French sentences that tell what an account-recovery step swept away, for pages and e-mails."""

from __future__ import annotations

# RFC 3676 §4.3: the line "-- " opens the signature of a plain-text mail.
SIGNATURE_SEPARATOR = "\n-- \n"


def api_tokens_revoked_for_owner(count: int) -> str:
    """Tell the account holder that *count* API tokens were revoked ('' when none was)."""
    if count == 0:
        return ""
    which = (
        "Votre jeton d'accès à l'API a été révoqué"
        if count == 1
        else f"Vos {count} jetons d'accès à l'API ont été révoqués"
    )
    return (
        f"{which} par précaution : si vos scripts en ont besoin, créez-en un nouveau depuis "
        "« Mon compte »."
    )


def api_tokens_revoked_for_manager(count: int) -> str:
    """Tell the account manager that *count* API tokens of the account were revoked."""
    if count == 0:
        return ""
    if count == 1:
        return "Son jeton d'accès à l'API a été révoqué."
    return f"Ses {count} jetons d'accès à l'API ont été révoqués."


MFA_ENROLMENT_LINK_VOIDED = (
    "Le lien de configuration de la double authentification qui vous avait été envoyé n'est "
    "plus valable : demandez une nouvelle réinitialisation à votre gestionnaire de comptes."
)


def with_paragraphs(body: str, *paragraphs: str) -> str:
    """*body* of a plain-text mail with *paragraphs* (empty ones skipped) before its signature."""
    extra = "\n\n".join(p for p in paragraphs if p)
    if not extra:
        return body
    head, separator, signature = body.rpartition(SIGNATURE_SEPARATOR)
    if not separator:
        return body.rstrip("\n") + "\n\n" + extra + "\n"
    return head.rstrip("\n") + "\n\n" + extra + "\n" + separator + signature
