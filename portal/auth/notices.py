"""French sentences that tell what an account-recovery step swept away, for pages and e-mails."""

from __future__ import annotations


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
