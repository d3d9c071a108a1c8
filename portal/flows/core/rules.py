"""Catalogue of the validation rules and the cross-field rules of each flow.

Every issue of a report carries one of these stable codes, so that a département can look it up
in the documentation and a program can react to it. Field-level checks (lengths, formats, code
lists) are declared with the fields in `spec.py`; this module holds the rules that involve
several fields, the header or the footer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Final

from portal.flows.core.types import Periodicity, Severity
from portal.orgs.departements import is_departement_code


class Rule(StrEnum):
    """Stable machine identifier of a validation rule."""

    # Encoding of the bytes (checked before and while parsing).
    ENCODING_DECLARATION = "encoding.declaration"
    ENCODING_BOM = "encoding.bom"
    ENCODING_UTF8 = "encoding.utf8"
    ENCODING_C1_CONTROL = "encoding.c1_control"
    ENCODING_CHAR_REFERENCE = "encoding.char_reference"
    # XML well-formedness and hardening.
    XML_DOCTYPE = "xml.doctype"
    XML_MALFORMED = "xml.malformed"
    XML_TOO_LARGE = "xml.too_large"
    XML_RECORD_TOO_LARGE = "xml.record_too_large"
    XML_ROOT = "xml.root"
    XML_SCHEMA = "xml.schema"
    # Structure (elements, their order and content).
    STRUCTURE_MISSING_ELEMENT = "structure.missing_element"
    STRUCTURE_UNEXPECTED_ELEMENT = "structure.unexpected_element"
    STRUCTURE_DUPLICATE_ELEMENT = "structure.duplicate_element"
    STRUCTURE_ORDER = "structure.order"
    STRUCTURE_UNEXPECTED_ATTRIBUTE = "structure.unexpected_attribute"
    STRUCTURE_UNEXPECTED_TEXT = "structure.unexpected_text"
    STRUCTURE_SPELLING = "structure.spelling"
    # One field at a time.
    FIELD_REQUIRED = "field.required"
    FIELD_MAX_LENGTH = "field.max_length"
    FIELD_LENGTH = "field.length"
    FIELD_DIGITS = "field.digits"
    FIELD_DATE = "field.date"
    FIELD_CODE = "field.code"
    FIELD_UPPER_ASCII = "field.upper_ascii"
    FIELD_NAME_FORMAT = "field.name_format"
    FIELD_NIR = "field.nir"
    FIELD_IDENTIFIANT_PE = "field.identifiant_pe"
    FIELD_CODE_ROME = "field.code_rome"
    # Header and footer.
    ENTETE_FICHIER = "entete.fichier"
    ENTETE_PERIODICITE = "entete.periodicite"
    ENTETE_DEPARTEMENT = "entete.departement"
    ENTETE_DEPARTEMENT_ESPACE = "entete.departement_espace"
    ENTETE_DATE_REFERENCE = "entete.date_reference"
    ENTETE_VERSION = "entete.version"
    ENTETE_DATE_FABRICATION_FUTURE = "entete.date_fabrication_future"
    FIN_DEPARTEMENT = "fin.departement"
    FIN_DATE_REFERENCE = "fin.date_reference"
    FIN_NB_DOSSIER = "fin.nb_dossier"
    # CGPEM records.
    CGPEM_NIR_OR_PE_ID = "cgpem.nir_or_pe_id"
    CGPEM_PE_ID_REQUIRED = "cgpem.pe_id_required"
    CGPEM_DATE_DECISION_FUTURE = "cgpem.date_decision_future"
    CGPEM_CORRESPONDANT_NOM_REQUIRED = "cgpem.correspondant_nom_required"
    CGPEM_CORRESPONDANT_NOM_EMPTY = "cgpem.correspondant_nom_empty"
    # Every record.
    INDIVIDU_DATE_NAISSANCE_FUTURE = "individu.date_naissance_future"
    # PECGM and PECDH records.
    INSCRIPTION_CESSATION_INCOMPLETE = "inscription.cessation_incomplete"
    INSCRIPTION_RADIATION_INCOMPLETE = "inscription.radiation_incomplete"
    # The report itself.
    REPORT_TRUNCATED = "report.truncated"

    @property
    def severity(self) -> Severity:
        """Whether the rule rejects the file or only warns."""
        return Severity.WARNING if self in _WARNINGS else Severity.ERROR

    @property
    def description(self) -> str:
        """One French sentence describing the rule, for the documentation and the CLI."""
        return DESCRIPTIONS[self]

    @property
    def source(self) -> str:
        """Where the rule comes from: the convention (which part) or our own checks."""
        return SOURCES[self]


# The principle (issue #19): an error refuses the whole file, so it is kept for what the
# convention states (structure, encoding, counts, types, lengths, fixed values and code lists,
# the rules it writes) or what makes the file unusable by the other side. Our own plausibility
# checks only warn: a refused file is a month of data that does not reach the other side, and a
# flow sent by France Travail is never refused on a check the convention does not state.
_WARNINGS: Final = frozenset(
    {
        Rule.STRUCTURE_SPELLING,
        Rule.FIELD_NAME_FORMAT,
        Rule.FIELD_NIR,
        Rule.FIELD_CODE_ROME,
        Rule.ENTETE_DATE_FABRICATION_FUTURE,
        Rule.INDIVIDU_DATE_NAISSANCE_FUTURE,
        Rule.CGPEM_CORRESPONDANT_NOM_EMPTY,
        Rule.INSCRIPTION_CESSATION_INCOMPLETE,
        Rule.INSCRIPTION_RADIATION_INCOMPLETE,
        Rule.REPORT_TRUNCATED,
    }
)

#: Warnings reported once per file with the number of records concerned, not once per record.
AGGREGATED_RULES: Final = frozenset({Rule.CGPEM_CORRESPONDANT_NOM_EMPTY})

OURS: Final = "nous"
_GENERAL: Final = "convention, règles générales"
_TABLES: Final = "convention, tables des champs"
_UNUSABLE: Final = "fichier inexploitable sinon"
#: Where each rule comes from. "nous": not written in the convention; such a rule is an error
#: only when the file would be unusable (or unsafe) otherwise, and says so.
SOURCES: Final[dict[Rule, str]] = {
    Rule.ENCODING_DECLARATION: f"{_GENERAL} (XML encodé en ISO-8859-1)",
    Rule.ENCODING_BOM: f"{_GENERAL} (ISO-8859-1)",
    Rule.ENCODING_UTF8: f"{_GENERAL} (ISO-8859-1)",
    Rule.ENCODING_C1_CONTROL: f"{_GENERAL} (ISO-8859-1)",
    Rule.ENCODING_CHAR_REFERENCE: f"{_GENERAL} (ISO-8859-1)",
    Rule.XML_DOCTYPE: f"{OURS} (sécurité ; {_UNUSABLE})",
    Rule.XML_MALFORMED: f"{_GENERAL} (format XML)",
    Rule.XML_TOO_LARGE: f"{OURS} (limite du portail ; {_UNUSABLE})",
    Rule.XML_RECORD_TOO_LARGE: f"{OURS} (limite du portail ; {_UNUSABLE})",
    Rule.XML_ROOT: f"{OURS} (squelette XML ; {_UNUSABLE})",
    Rule.XML_SCHEMA: f"{_TABLES} (XSD du flux)",
    Rule.STRUCTURE_MISSING_ELEMENT: f"{_TABLES} (champ obligatoire) et squelette XML",
    Rule.STRUCTURE_UNEXPECTED_ELEMENT: f"{OURS} (squelette XML ; {_UNUSABLE})",
    Rule.STRUCTURE_DUPLICATE_ELEMENT: f"{OURS} (squelette XML ; {_UNUSABLE})",
    Rule.STRUCTURE_ORDER: f"{_TABLES} (ordre des champs)",
    Rule.STRUCTURE_UNEXPECTED_ATTRIBUTE: f"{OURS} (squelette XML ; {_UNUSABLE})",
    Rule.STRUCTURE_UNEXPECTED_TEXT: f"{OURS} (squelette XML ; {_UNUSABLE})",
    Rule.STRUCTURE_SPELLING: f"{_TABLES} (orthographe des tables, nom canonique du squelette)",
    Rule.FIELD_REQUIRED: f"{_TABLES} (champ obligatoire)",
    Rule.FIELD_MAX_LENGTH: f"{_TABLES} (longueur)",
    Rule.FIELD_LENGTH: f"{_TABLES} (longueur fixe)",
    Rule.FIELD_DIGITS: f"{_TABLES} (type N)",
    Rule.FIELD_DATE: f"{_GENERAL} (dates aaaa-mm-jj)",
    Rule.FIELD_CODE: f"{_TABLES} et listes de codes",
    Rule.FIELD_UPPER_ASCII: f"{_TABLES} (CGPEM : noms en majuscules, sans accents)",
    Rule.FIELD_NAME_FORMAT: f"{OURS} (plausibilité des noms)",
    Rule.FIELD_NIR: f"{OURS} (plausibilité du NIR ; la table dit « max 13 AN »)",
    Rule.FIELD_IDENTIFIANT_PE: f"{_TABLES} (7 chiffres + 1 lettre, ou 8 chiffres)",
    Rule.FIELD_CODE_ROME: f"{OURS} (forme d'un code ROME ; la table dit « 5 AN »)",
    Rule.ENTETE_FICHIER: f"{_TABLES} (en-tête, valeur fixe)",
    Rule.ENTETE_PERIODICITE: f"{_TABLES} (en-tête, valeur fixe ; CGPEM : M ou H)",
    Rule.ENTETE_DEPARTEMENT: f"{_GENERAL} (code département)",
    Rule.ENTETE_DEPARTEMENT_ESPACE: f"{_GENERAL} (dépôt dans l'espace du département)",
    Rule.ENTETE_DATE_REFERENCE: f"{_TABLES} (en-tête : mensuel, aaaa-mm-01)",
    Rule.ENTETE_VERSION: f"{_TABLES} (en-tête, valeur fixe 001,0)",
    Rule.ENTETE_DATE_FABRICATION_FUTURE: f"{OURS} (plausibilité des dates)",
    Rule.FIN_DEPARTEMENT: f"{_TABLES} (pied de fichier)",
    Rule.FIN_DATE_REFERENCE: f"{_TABLES} (pied : date de l'en-tête ou premier du mois)",
    Rule.FIN_NB_DOSSIER: f"{_GENERAL} (nombre de dossiers)",
    Rule.INDIVIDU_DATE_NAISSANCE_FUTURE: f"{OURS} (plausibilité des dates)",
    Rule.CGPEM_NIR_OR_PE_ID: f"{_TABLES} (CGPEM : NIR obligatoire sans code et identifiant)",
    Rule.CGPEM_PE_ID_REQUIRED: f"{_TABLES} (CGPEM : identifiant avec le code)",
    Rule.CGPEM_DATE_DECISION_FUTURE: f"{_TABLES} (CGPEM : pas postérieure à la date du jour)",
    Rule.CGPEM_CORRESPONDANT_NOM_REQUIRED: f"{_TABLES} (CGPEM : nom si prénom, tél., courriel)",
    Rule.CGPEM_CORRESPONDANT_NOM_EMPTY: f"{_TABLES} (CGPEM : nom vide, le référent est effacé)",
    Rule.INSCRIPTION_CESSATION_INCOMPLETE: f"{OURS} (cohérence date et motif)",
    Rule.INSCRIPTION_RADIATION_INCOMPLETE: f"{OURS} (cohérence date et motif)",
    Rule.REPORT_TRUNCATED: f"{OURS} (plafond du rapport)",
}

DESCRIPTIONS: Final[dict[Rule, str]] = {
    Rule.ENCODING_DECLARATION: "Le prologue doit déclarer l'encodage ISO-8859-1.",
    Rule.ENCODING_BOM: "Le fichier ne doit pas commencer par une marque d'ordre des octets (BOM).",
    Rule.ENCODING_UTF8: "Le fichier contient des caractères encodés en UTF-8 au lieu d'ISO-8859-1.",
    Rule.ENCODING_C1_CONTROL: "Le fichier contient des caractères de contrôle C1 (octets 0x80 à "
    "0x9F), signe d'un encodage Windows-1252.",
    Rule.ENCODING_CHAR_REFERENCE: "Une référence de caractère (&#…;) désigne un caractère hors "
    "d'ISO-8859-1.",
    Rule.XML_DOCTYPE: "Les déclarations DOCTYPE et ENTITY sont interdites.",
    Rule.XML_MALFORMED: "Le fichier n'est pas un XML bien formé.",
    Rule.XML_TOO_LARGE: "Le fichier dépasse la taille maximale acceptée.",
    Rule.XML_RECORD_TOO_LARGE: "Un enregistrement dépasse la taille maximale acceptée.",
    Rule.XML_ROOT: "L'élément racine doit être <flux>.",
    Rule.XML_SCHEMA: "Le fichier n'est pas conforme au schéma XSD du flux.",
    Rule.STRUCTURE_MISSING_ELEMENT: "Un élément obligatoire manque.",
    Rule.STRUCTURE_UNEXPECTED_ELEMENT: "Un élément n'est pas prévu à cet endroit.",
    Rule.STRUCTURE_DUPLICATE_ELEMENT: "Un élément apparaît plusieurs fois.",
    Rule.STRUCTURE_ORDER: "Les éléments ne sont pas dans l'ordre prévu.",
    Rule.STRUCTURE_UNEXPECTED_ATTRIBUTE: "Les éléments ne portent pas d'attribut.",
    Rule.STRUCTURE_UNEXPECTED_TEXT: "Du texte figure hors d'un champ.",
    Rule.STRUCTURE_SPELLING: "Un élément est écrit comme dans les tables de la convention "
    "(accents, majuscules) : accepté, le rapport donne le nom canonique.",
    Rule.FIELD_REQUIRED: "Un champ obligatoire est vide.",
    Rule.FIELD_MAX_LENGTH: "Un champ dépasse sa longueur maximale.",
    Rule.FIELD_LENGTH: "Un champ n'a pas sa longueur fixe.",
    Rule.FIELD_DIGITS: "Un champ numérique contient autre chose que des chiffres ou n'a pas le "
    "bon nombre de chiffres.",
    Rule.FIELD_DATE: "Une date n'est pas au format aaaa-mm-jj ou n'existe pas.",
    Rule.FIELD_CODE: "Une valeur n'appartient pas à la liste de codes du champ.",
    Rule.FIELD_UPPER_ASCII: "Un nom ou prénom doit être en majuscules sans accents.",
    Rule.FIELD_NAME_FORMAT: "Un nom ou prénom contient autre chose que des lettres, espaces, "
    "apostrophes et tirets.",
    Rule.FIELD_NIR: "Le NIR ne ressemble pas à un NIR sans clé de 13 caractères.",
    Rule.FIELD_IDENTIFIANT_PE: "L'identifiant France Travail doit comporter 7 chiffres suivis "
    "d'une lettre ou d'un chiffre.",
    Rule.FIELD_CODE_ROME: "Le code ROME ne ressemble pas à une lettre suivie de 4 chiffres.",
    Rule.ENTETE_FICHIER: "Le type de fichier de l'en-tête ne correspond pas au flux.",
    Rule.ENTETE_PERIODICITE: "La périodicité de l'en-tête ne correspond pas au flux.",
    Rule.ENTETE_DEPARTEMENT: "Le code département de l'en-tête est invalide.",
    Rule.ENTETE_DEPARTEMENT_ESPACE: "Le département de l'en-tête diffère de celui de l'espace de "
    "dépôt.",
    Rule.ENTETE_DATE_REFERENCE: "La date de référence d'un flux mensuel doit être le premier du "
    "mois.",
    Rule.ENTETE_VERSION: "La version de structure n'est pas prise en charge.",
    Rule.ENTETE_DATE_FABRICATION_FUTURE: "La date de fabrication est postérieure à la date du "
    "jour.",
    Rule.FIN_DEPARTEMENT: "Le département du pied de fichier est invalide ou diffère de celui "
    "de l'en-tête.",
    Rule.FIN_DATE_REFERENCE: "La date de référence du pied de fichier n'est ni celle de "
    "l'en-tête ni le premier jour de son mois.",
    Rule.FIN_NB_DOSSIER: "Le nombre de dossiers annoncé ne correspond pas au nombre de dossiers.",
    Rule.CGPEM_NIR_OR_PE_ID: "Le NIR est obligatoire si le code et l'identifiant France Travail "
    "sont absents.",
    Rule.CGPEM_PE_ID_REQUIRED: "L'identifiant France Travail est obligatoire si le code France "
    "Travail est renseigné.",
    Rule.CGPEM_DATE_DECISION_FUTURE: "La date de décision ne peut pas être postérieure à la date "
    "du jour.",
    Rule.CGPEM_CORRESPONDANT_NOM_REQUIRED: "Le nom du correspondant est obligatoire si son "
    "prénom, son téléphone ou son courriel est renseigné.",
    Rule.CGPEM_CORRESPONDANT_NOM_EMPTY: "Correspondant sans nom : France Travail effacera le "
    "référent qu'il connaît pour ces personnes.",
    Rule.INDIVIDU_DATE_NAISSANCE_FUTURE: "La date de naissance est postérieure à la date du jour.",
    Rule.INSCRIPTION_CESSATION_INCOMPLETE: "Une cessation d'inscription doit avoir sa date et son "
    "motif.",
    Rule.INSCRIPTION_RADIATION_INCOMPLETE: "Une radiation doit avoir sa date et son motif.",
    Rule.REPORT_TRUNCATED: "Le rapport ne liste pas toutes les anomalies (plafond atteint).",
}


@dataclass(frozen=True, slots=True)
class RuleContext:
    """What cross-field rules need to know besides the record."""

    today: date


@dataclass(frozen=True, slots=True)
class RuleHit:
    """A violated rule inside one record; the validator adds the line and record number."""

    rule: Rule
    field: str  # path relative to the record, e.g. "individu/nir"
    message: str
    value: str | None = None


#: Text of the fields of a record: group name -> field name -> text (None when empty).
RecordValues = Mapping[str, Mapping[str, str | None]]
RecordRule = Callable[[RecordValues, RuleContext], list[RuleHit]]

_EMPTY: Final[Mapping[str, str | None]] = {}
_CONTACT_FIELDS: Final = (
    ("prenom", "son prénom (prenom)"),
    ("telephone", "son téléphone (telephone)"),
    ("email", "son courriel (email)"),
)


def is_filled(value: str | None) -> bool:
    """An optional field may be absent or empty: empty (or XML white space) counts as absent."""
    return value is not None and value.strip(" \t\r\n") != ""


def parse_date(value: str | None) -> date | None:
    """The date written as aaaa-mm-jj, or None when the text is not such a date."""
    if value is None:
        return None
    text = value.strip(" \t\r\n")
    if len(text) != 10 or text[4] != "-" or text[7] != "-":
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def cgpem_record_rules(values: RecordValues, context: RuleContext) -> list[RuleHit]:
    """The conditional rules of a CGPEM record (the strictest of the three flows)."""
    hits: list[RuleHit] = []
    individu = values.get("individu", _EMPTY)
    has_code_pe = is_filled(individu.get("code-pe"))
    has_identifiant_pe = is_filled(individu.get("identifiant-pe"))
    if not is_filled(individu.get("nir")) and not (has_code_pe and has_identifiant_pe):
        hits.append(
            RuleHit(
                Rule.CGPEM_NIR_OR_PE_ID,
                "individu/nir",
                "Le NIR est obligatoire quand le code France Travail (code-pe) et l'identifiant "
                "France Travail (identifiant-pe) ne sont pas tous deux renseignés.",
            )
        )
    if has_code_pe and not has_identifiant_pe:
        hits.append(
            RuleHit(
                Rule.CGPEM_PE_ID_REQUIRED,
                "individu/identifiant-pe",
                "L'identifiant France Travail (identifiant-pe) est obligatoire quand le code "
                "France Travail (code-pe) est renseigné.",
            )
        )
    decision_text = values.get("orientation", _EMPTY).get("date-decision")
    decided_on = parse_date(decision_text)
    if decided_on is not None and decided_on > context.today:
        hits.append(
            RuleHit(
                Rule.CGPEM_DATE_DECISION_FUTURE,
                "orientation/date-decision",
                f"La date de décision est postérieure à la date du jour "
                f"({context.today.isoformat()}).",
                decision_text,
            )
        )
    correspondant = values.get("correspondant", _EMPTY)
    if not is_filled(correspondant.get("nom")):
        given = [label for name, label in _CONTACT_FIELDS if is_filled(correspondant.get(name))]
        if given:
            listed = given[0] if len(given) == 1 else ", ".join(given[:-1]) + " et " + given[-1]
            hits.append(
                RuleHit(
                    Rule.CGPEM_CORRESPONDANT_NOM_REQUIRED,
                    "correspondant/nom",
                    f"Le nom du correspondant est obligatoire quand {listed} "
                    + ("est renseigné." if len(given) == 1 else "sont renseignés."),
                )
            )
        hits.append(
            RuleHit(
                Rule.CGPEM_CORRESPONDANT_NOM_EMPTY,
                "correspondant/nom",
                "Correspondant sans nom : France Travail effacera le référent qu'il connaît.",
            )
        )
    return hits


def individu_rules(values: RecordValues, context: RuleContext) -> list[RuleHit]:
    """Plausibility of the person (ours, a warning): not born after today."""
    text = values.get("individu", _EMPTY).get("date-naissance")
    born_on = parse_date(text)
    if born_on is not None and born_on > context.today:
        return [
            RuleHit(
                Rule.INDIVIDU_DATE_NAISSANCE_FUTURE,
                "individu/date-naissance",
                f"La date de naissance est postérieure à la date du jour "
                f"({context.today.isoformat()}).",
                text,
            )
        ]
    return []


def inscription_rules(values: RecordValues, context: RuleContext) -> list[RuleHit]:
    """A cessation or a radiation of a PECGM/PECDH record has both its date and its motive."""
    hits: list[RuleHit] = []
    inscription = values.get("inscription", _EMPTY)
    for rule, event, suffix in (
        (Rule.INSCRIPTION_CESSATION_INCOMPLETE, "cessation", "cessation-ide"),
        (Rule.INSCRIPTION_RADIATION_INCOMPLETE, "radiation", "radiation-ide"),
    ):
        has_date = is_filled(inscription.get(f"date-{suffix}"))
        has_motif = is_filled(inscription.get(f"motif-{suffix}"))
        has_label = is_filled(inscription.get(f"lib-{suffix}"))
        if not has_date and (has_motif or has_label):
            hits.append(
                RuleHit(
                    rule,
                    f"inscription/date-{suffix}",
                    f"La date de {event} est obligatoire quand le motif ou le libellé de "
                    f"{event} est renseigné.",
                )
            )
        if not has_motif and (has_date or has_label):
            hits.append(
                RuleHit(
                    rule,
                    f"inscription/motif-{suffix}",
                    f"Le motif de {event} est obligatoire quand la date ou le libellé de "
                    f"{event} est renseigné.",
                )
            )
    return hits


def entete_rules(
    values: Mapping[str, str | None], *, departement: str | None, today: date | None = None
) -> list[RuleHit]:
    """Header rules beyond single fields: the space's département, monthly reference date,
    a fabrication date that is not in the future (ours, a warning)."""
    hits: list[RuleHit] = []
    header_departement = values.get("departement")
    if (
        departement is not None
        and header_departement is not None
        and is_departement_code(header_departement)
        and header_departement != departement
    ):
        hits.append(
            RuleHit(
                Rule.ENTETE_DEPARTEMENT_ESPACE,
                "departement",
                f"Le fichier porte le département {header_departement} alors qu'il est déposé "
                f"dans l'espace du département {departement}.",
                header_departement,
            )
        )
    reference = parse_date(values.get("date-reference"))
    if (
        reference is not None
        and values.get("periodicite") == Periodicity.MONTHLY
        and reference.day != 1
    ):
        hits.append(
            RuleHit(
                Rule.ENTETE_DATE_REFERENCE,
                "date-reference",
                "Un flux mensuel a pour date de référence le premier jour du mois "
                f"({reference.replace(day=1).isoformat()}).",
                values.get("date-reference"),
            )
        )
    made = parse_date(values.get("date-fabrication"))
    if today is not None and made is not None and made > today:
        hits.append(
            RuleHit(
                Rule.ENTETE_DATE_FABRICATION_FUTURE,
                "date-fabrication",
                f"La date de fabrication est postérieure à la date du jour ({today.isoformat()}).",
                values.get("date-fabrication"),
            )
        )
    return hits


def _well_formed(name: str, value: str | None) -> bool:
    if value is None:
        return False
    if name == "departement":
        return is_departement_code(value)
    return parse_date(value) is not None and value == value.strip()


#: The two readings of the footer's reference date (the tables contradict each other).
READING_SAME_DATE: Final = "date de l'en-tête (tables des en-têtes)"
READING_FIRST_OF_MONTH: Final = "premier jour du mois de l'en-tête (tables des pieds de fichier)"
READING_BOTH: Final = "date de l'en-tête, premier du mois (les deux lectures concordent)"


def footer_date_reading(
    values: Mapping[str, str | None], header: Mapping[str, str | None]
) -> str | None:
    """Which reading of the tables the footer's reference date follows, None if neither.

    Every footer table says "Traitement mensuel, la référence est le mois de cette date au
    format aaaa-mm-01" while the PECDH header (and the CGPEM one, copied from it) says "la
    référence est la date du jour du traitement": a weekly file's footer may carry the header's
    date or the first of its month. Both are accepted; the report says which one the file took.
    """
    in_footer = parse_date(values.get("date-reference"))
    in_header = parse_date(header.get("date-reference"))
    if in_footer is None or in_header is None:
        return None
    first = in_header.replace(day=1)
    if in_footer == in_header:
        return READING_BOTH if in_header == first else READING_SAME_DATE
    return READING_FIRST_OF_MONTH if in_footer == first else None


def fin_rules(values: Mapping[str, str | None], header: Mapping[str, str | None]) -> list[RuleHit]:
    """The footer repeats the header's département, and its reference date (or its month)."""
    hits: list[RuleHit] = []
    name = "departement"
    in_footer, in_header = values.get(name), header.get(name)
    # A malformed value is already reported on its own; compare only well-formed ones.
    if _well_formed(name, in_footer) and _well_formed(name, in_header) and in_footer != in_header:
        hits.append(
            RuleHit(
                Rule.FIN_DEPARTEMENT,
                name,
                f"Le département du pied de fichier diffère de celui de l'en-tête ({in_header}).",
                in_footer,
            )
        )
    name = "date-reference"
    in_footer, in_header = values.get(name), header.get(name)
    if (
        _well_formed(name, in_footer)
        and _well_formed(name, in_header)
        and footer_date_reading(values, header) is None
    ):
        first = (parse_date(in_header) or date.min).replace(day=1).isoformat()
        hits.append(
            RuleHit(
                Rule.FIN_DATE_REFERENCE,
                name,
                "La date de référence du pied de fichier n'est ni celle de l'en-tête "
                f"({in_header}) ni le premier jour de son mois ({first}).",
                in_footer,
            )
        )
    return hits
