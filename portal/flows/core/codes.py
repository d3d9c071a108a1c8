"""Code lists of the convention (annex "Liste des données et structures des fichiers")."""

from __future__ import annotations

from typing import Final

#: Nature of the orientation decision (CGPEM `orientation/nature`).
NATURES_ORIENTATION: Final[dict[str, str]] = {
    "01": "référent social",
    "02": "autre opérateur public",
    "03": "opérateur privé de l'emploi",
    "04": "réseau d'appui à la création d'entreprise",
    "05": "France Travail (offre de service de droit commun)",
    "06": "France Travail (offre de service complémentaire RSA)",
}

#: Registration category (`inscription/code-categorie`); empty means exempt of job search.
CATEGORIES_INSCRIPTION: Final[dict[str, str]] = {
    "1": "catégorie 1",
    "2": "catégorie 2",
    "3": "catégorie 3",
    "4": "catégorie 4",
    "5": "catégorie 5",
}

#: Main work axis of the PPAE (`ppae/axe/code`).
AXES_TRAVAIL: Final[dict[str, str]] = {
    "01": "retour direct à l'emploi",
    "02": "techniques de recherche d'emploi",
    "03": "stratégie de recherche d'emploi",
    "04": "adaptation au marché du travail",
    "05": "élaboration du projet professionnel",
    "06": "levée des freins périphériques",
    "07": "à approfondir",
}

#: Follow-up modality. The convention lists it next to the axes without giving it a field of
#: its own; `ppae/axe/code` (3 AN) accepts both lists so that a real export is not refused.
MODALITES_ACCOMPAGNEMENT: Final[dict[str, str]] = {
    "APR": "à approfondir",
    "GUI": "guidé",
    "REN": "renforcé",
    "SUI": "suivi",
    "GLO": "global",
}

#: Training level (`formation/code-niveau`).
NIVEAUX_FORMATION: Final[tuple[str, ...]] = (
    "AFS",
    "CFG",
    "CP4",
    "C12",
    "C3A",
    "NV1",
    "NV2",
    "NV3",
    "NV4",
    "NV5",
)


def _expand(*parts: str) -> tuple[str, ...]:
    codes: list[str] = []
    for part in parts:
        first, _, last = part.partition("-")
        codes.extend(f"{n:02d}" for n in range(int(first), int(last or first) + 1))
    return tuple(codes)


#: Reason of cessation of registration (`inscription/motif-cessation-ide`).
MOTIFS_CESSATION: Final[tuple[str, ...]] = _expand(
    "11-16",
    "18",
    "19",
    "21-25",
    "31-34",
    "36-39",
    "41-43",
    "45-49",
    "71-73",
    "80",
    "90",
    "95",
    "98",
)
