"""Structure `001,0` of the three flows, from the convention's field tables."""

from __future__ import annotations

from portal.flows.core.codes import (
    AXES_TRAVAIL,
    CATEGORIES_INSCRIPTION,
    MODALITES_ACCOMPAGNEMENT,
    MOTIFS_CESSATION,
    NATURES_ORIENTATION,
    NIVEAUX_FORMATION,
)
from portal.flows.core.rules import (
    RecordRule,
    Rule,
    cgpem_record_rules,
    individu_rules,
    inscription_rules,
)
from portal.flows.core.spec import (
    Advice,
    CleanProfile,
    FieldKind,
    FieldSpec,
    FlowSpec,
    GroupSpec,
    Identity,
    advice_rules,
)
from portal.flows.core.types import FlowType
from portal.orgs.departements import DEPARTEMENT_PATTERN

VERSION = "001,0"

AN = FieldKind.TEXT
N = FieldKind.DIGITS
DATE = FieldKind.DATE

# NIR without its key: sex (1, 2, or 3, 4, 7, 8 for provisional numbers), year, month,
# département (2A/2B for Corsica), commune and order number.
NIR_PATTERN = "[1-478][0-9]{4}([0-9]{2}|2[AB])[0-9]{6}"
# France Travail identifier: 7 digits then a letter, or 8 digits.
IDENTIFIANT_PE_PATTERN = "[0-9]{7}[0-9A-Z]"
# What the CGPEM table states of names: upper case, no accents (and not blank). An error.
UPPER_NO_ACCENT_PATTERN = "[^a-zÀ-ÿ]*[^a-zÀ-ÿ \\t\\r\\n][^a-zÀ-ÿ]*"
# Ours, a warning: letters A-Z; inner spaces, apostrophes and hyphens (LE GALL, D'ARC).
UPPER_ASCII_PATTERN = "[A-Z]([A-Z '\\-]*[A-Z])?"
ROME_PATTERN = "[A-Z][0-9]{4}"


def _nir() -> FieldSpec:
    # The table says "max 13 AN": the shape of a NIR is our plausibility check (a warning).
    return FieldSpec(
        "nir",
        max_length=13,
        label="NIR sans clé",
        is_nir=True,
        advice=Advice(
            NIR_PATTERN,
            Rule.FIELD_NIR,
            "ne ressemble pas à un NIR sans clé de 13 caractères (sexe, année, mois, "
            "département, commune, rang) : vérifiez-le.",
        ),
    )


def _identifiant_pe() -> FieldSpec:
    return FieldSpec(
        "identifiant-pe",
        length=8,
        pattern=IDENTIFIANT_PE_PATTERN,
        rule=Rule.FIELD_IDENTIFIANT_PE,
        hint="doit comporter 7 chiffres suivis d'une lettre majuscule ou d'un chiffre.",
        label="identifiant France Travail",
    )


def _code_pe() -> FieldSpec:
    return FieldSpec("code-pe", N, length=3, label="code régional France Travail")


def _upper(name: str, *, required: bool, label: str) -> FieldSpec:
    return FieldSpec(
        name,
        max_length=25,
        required=required,
        pattern=UPPER_NO_ACCENT_PATTERN,
        rule=Rule.FIELD_UPPER_ASCII,
        hint="doit être en majuscules sans accents.",
        label=label,
        advice=Advice(
            UPPER_ASCII_PATTERN,
            Rule.FIELD_NAME_FORMAT,
            "contient autre chose que des lettres A à Z, espaces, apostrophes et tirets : "
            "vérifiez-le.",
        ),
    )


def _entete(flow_type: FlowType) -> GroupSpec:
    return GroupSpec(
        "entete",
        (
            FieldSpec(
                "fichier",
                length=4,
                required=True,
                codes=(flow_type.fichier,),
                rule=Rule.ENTETE_FICHIER,
                label="type de fichier",
            ),
            FieldSpec(
                "periodicite",
                length=1,
                required=True,
                codes=tuple(p.value for p in flow_type.periodicities),
                rule=Rule.ENTETE_PERIODICITE,
                label="périodicité",
            ),
            _departement(Rule.ENTETE_DEPARTEMENT),
            FieldSpec("date-reference", DATE, required=True, label="date de référence"),
            FieldSpec("date-fabrication", DATE, required=True, label="date de fabrication"),
            FieldSpec(
                "version",
                length=5,
                required=True,
                codes=(VERSION,),
                rule=Rule.ENTETE_VERSION,
                label="version de la structure",
            ),
        ),
        label="en-tête",
    )


def _departement(rule: Rule) -> FieldSpec:
    return FieldSpec(
        "departement",
        max_length=3,
        required=True,
        pattern=DEPARTEMENT_PATTERN,
        rule=rule,
        hint="doit être un code département : 01 à 95 (sauf 20), 2A, 2B, 971 à 976.",
        label="code département",
    )


FIN = GroupSpec(
    "fin",
    (
        _departement(Rule.FIN_DEPARTEMENT),
        FieldSpec("date-reference", DATE, required=True, label="date de référence"),
        FieldSpec("nb-dossier", N, max_length=8, required=True, label="nombre de dossiers"),
    ),
    label="pied de fichier",
)


def _individu_pe() -> GroupSpec:
    """The `individu` group of PECGM and PECDH."""
    return GroupSpec(
        "individu",
        (
            _nir(),
            FieldSpec("nom-naissance", max_length=25, label="nom de naissance"),
            FieldSpec("nom-marital", max_length=25, label="nom d'usage"),
            FieldSpec("prenom", max_length=25, label="prénom"),
            FieldSpec("date-naissance", DATE, label="date de naissance"),
            FieldSpec(
                "certification-identite",
                length=1,
                codes=("O", "N"),
                label="identité certifiée (O/N)",
            ),
            FieldSpec("commune-residence", length=5, label="code INSEE de la commune"),
        ),
    )


def _inscription_events() -> tuple[FieldSpec, ...]:
    return (
        FieldSpec("date-cessation-ide", DATE, label="date de cessation d'inscription"),
        FieldSpec(
            "motif-cessation-ide",
            max_length=2,
            codes=MOTIFS_CESSATION,
            label="motif de cessation",
        ),
        FieldSpec("lib-cessation-ide", max_length=75, label="libellé du motif de cessation"),
        FieldSpec("date-radiation-ide", DATE, label="date de radiation"),
        FieldSpec("motif-radiation-ide", max_length=2, label="motif de radiation"),
        FieldSpec("lib-radiation-ide", max_length=75, label="libellé du motif de radiation"),
    )


# A record without cessation nor radiation breaks no PECGM/PECDH record rule.
_NO_INSCRIPTION_EVENT = CleanProfile(
    empty=tuple(
        f"inscription/{kind}-{event}-ide"
        for event in ("cessation", "radiation")
        for kind in ("date", "motif", "lib")
    ),
    not_after_today=("individu/date-naissance",),
)


def _relaxed(group: GroupSpec) -> GroupSpec:
    """`group`, mandatory only if it holds a mandatory field (and so on below it).

    The tables list fields, mandatory or not; they say nothing of groups (the nesting is ours),
    so a group without a mandatory field may be absent, as an empty optional field may.
    """
    children = tuple(
        _relaxed(child) if isinstance(child, GroupSpec) else child for child in group.children
    )
    return GroupSpec(
        group.name, children, required=any(c.required for c in children), label=group.label
    )


def _dossier(group: GroupSpec) -> GroupSpec:
    """The record: its groups are mandatory only when they hold a mandatory field."""
    children = tuple(
        _relaxed(child) if isinstance(child, GroupSpec) else child for child in group.children
    )
    return GroupSpec(group.name, children, label=group.label)


def _record_rules(dossier: GroupSpec, *rules: RecordRule) -> tuple[RecordRule, ...]:
    """The flow's own rules, then the checks of ours every flow shares (warnings)."""
    return (*rules, individu_rules, advice_rules(dossier))


def _structure(name: str, *, required: bool, label: str) -> GroupSpec:
    return GroupSpec(
        name,
        (
            FieldSpec("nom", max_length=27, label="nom de la structure"),
            FieldSpec("voie", max_length=32, label="voie"),
            FieldSpec("complement", max_length=32, label="complément d'adresse"),
            FieldSpec("code-postal", N, length=5, label="code postal"),
            FieldSpec("cedex", N, max_length=2, label="numéro de CEDEX"),
            FieldSpec("bureau", max_length=26, label="bureau distributeur"),
        ),
        required=required,
        label=label,
    )


_PECGM_DOSSIER = _dossier(
    GroupSpec(
        "dossier",
        (
            _individu_pe(),
            GroupSpec(
                "allocataire",
                (
                    FieldSpec("identifiant-caf", max_length=15, label="identifiant CAF"),
                    FieldSpec("identifiant-msa", max_length=13, label="identifiant MSA"),
                    _code_pe(),
                    _identifiant_pe(),
                ),
            ),
            GroupSpec(
                "inscription",
                (
                    FieldSpec("date-debut-ide", DATE, label="date de dernière inscription"),
                    FieldSpec(
                        "code-categorie",
                        max_length=1,
                        codes=tuple(CATEGORIES_INSCRIPTION),
                        label="catégorie d'inscription (vide : dispensé)",
                    ),
                    FieldSpec("lib-categorie", max_length=60, label="libellé de la catégorie"),
                    FieldSpec("code-situation", max_length=3, label="code de situation"),
                    FieldSpec("lib-situation", max_length=45, label="libellé de la situation"),
                    *_inscription_events(),
                ),
            ),
            GroupSpec(
                "suivi",
                (
                    _structure("structure-principale", required=True, label="structure de suivi"),
                    _structure("structure-deleguee", required=False, label="structure déléguée"),
                ),
            ),
            GroupSpec(
                "formation",
                (
                    FieldSpec(
                        "code-niveau",
                        max_length=3,
                        codes=NIVEAUX_FORMATION,
                        label="niveau de formation",
                    ),
                    FieldSpec("lib-niveau", max_length=50, label="libellé du niveau"),
                    FieldSpec("code-secteur", length=5, label="secteur de formation (FORMACODE)"),
                    FieldSpec("lib-secteur", max_length=30, label="libellé du secteur"),
                ),
            ),
            GroupSpec(
                "rome-v3",
                (
                    FieldSpec(
                        "code-rome",
                        length=5,
                        label="code métier ROME v3",
                        advice=Advice(
                            ROME_PATTERN,
                            Rule.FIELD_CODE_ROME,
                            "ne ressemble pas à un code ROME v3 (une lettre majuscule suivie "
                            "de 4 chiffres, par exemple K1201) : vérifiez-le.",
                        ),
                    ),
                    FieldSpec("lib-rome", max_length=150, label="libellé du métier"),
                ),
            ),
            GroupSpec(
                "ppae",
                (
                    FieldSpec("conseiller-pe", max_length=27, label="conseiller principal"),
                    FieldSpec("date-signature", DATE, label="date de signature du PPAE"),
                    FieldSpec("date-notification", DATE, label="date de notification du PPAE"),
                    GroupSpec(
                        "axe",
                        (
                            FieldSpec(
                                "code",
                                max_length=3,
                                codes=(*AXES_TRAVAIL, *MODALITES_ACCOMPAGNEMENT),
                                label="axe de travail principal",
                            ),
                            FieldSpec("libelle", max_length=40, label="libellé de l'axe"),
                        ),
                    ),
                    FieldSpec("date-dernier-ent", DATE, label="date du dernier entretien"),
                ),
            ),
        ),
    )
)

PECGM = FlowSpec(
    FlowType.PECGM,
    VERSION,
    _entete(FlowType.PECGM),
    _PECGM_DOSSIER,
    FIN,
    record_rules=_record_rules(_PECGM_DOSSIER, inscription_rules),
    clean=_NO_INSCRIPTION_EVENT,
)

_PECDH_DOSSIER = _dossier(
    GroupSpec(
        "dossier",
        (
            _individu_pe(),
            GroupSpec("allocataire", (_code_pe(), _identifiant_pe())),
            GroupSpec(
                "inscription",
                (
                    FieldSpec("date-debut-ide", DATE, label="date de dernière inscription"),
                    *_inscription_events(),
                ),
            ),
        ),
    )
)

PECDH = FlowSpec(
    FlowType.PECDH,
    VERSION,
    _entete(FlowType.PECDH),
    _PECDH_DOSSIER,
    FIN,
    record_rules=_record_rules(_PECDH_DOSSIER, inscription_rules),
    clean=_NO_INSCRIPTION_EVENT,
)

_CGPEM_DOSSIER = _dossier(
    GroupSpec(
        "dossier",
        (
            GroupSpec(
                "individu",
                (
                    _nir(),
                    _upper("nom-naissance", required=True, label="nom de naissance"),
                    _upper("nom-marital", required=False, label="nom d'usage"),
                    _upper("prenom", required=True, label="prénom"),
                    FieldSpec("date-naissance", DATE, label="date de naissance"),
                    _code_pe(),
                    _identifiant_pe(),
                ),
            ),
            GroupSpec(
                "orientation",
                (
                    FieldSpec(
                        "nature",
                        N,
                        length=2,
                        required=True,
                        codes=tuple(NATURES_ORIENTATION),
                        label="nature de l'orientation",
                    ),
                    FieldSpec("date-decision", DATE, required=True, label="date de décision"),
                ),
            ),
            GroupSpec(
                "correspondant",
                (
                    FieldSpec("organisme", max_length=90, label="organisme et adresse"),
                    FieldSpec("service", max_length=50, label="service"),
                    FieldSpec("nom", max_length=30, label="nom du correspondant"),
                    FieldSpec("prenom", max_length=25, label="prénom du correspondant"),
                    FieldSpec("telephone", max_length=10, label="téléphone"),
                    FieldSpec("email", max_length=60, label="courriel"),
                ),
            ),
        ),
    )
)
CGPEM = FlowSpec(
    FlowType.CGPEM,
    VERSION,
    _entete(FlowType.CGPEM),
    _CGPEM_DOSSIER,
    FIN,
    record_rules=_record_rules(_CGPEM_DOSSIER, cgpem_record_rules),
    breakdown=("orientation", "nature"),
    clean=CleanProfile(
        non_blank=("correspondant/nom",),
        not_after_today=("orientation/date-decision", "individu/date-naissance"),
        identity=Identity("individu", "nir", "code-pe", "identifiant-pe"),
    ),
)

SPECS: tuple[FlowSpec, ...] = (CGPEM, PECGM, PECDH)
