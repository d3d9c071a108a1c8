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
    # One field at a time.
    FIELD_REQUIRED = "field.required"
    FIELD_MAX_LENGTH = "field.max_length"
    FIELD_LENGTH = "field.length"
    FIELD_DIGITS = "field.digits"
    FIELD_DATE = "field.date"
    FIELD_CODE = "field.code"
    FIELD_UPPER_ASCII = "field.upper_ascii"
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
    FIN_DEPARTEMENT = "fin.departement"
    FIN_DATE_REFERENCE = "fin.date_reference"
    FIN_NB_DOSSIER = "fin.nb_dossier"
    # CGPEM records.
    CGPEM_NIR_OR_PE_ID = "cgpem.nir_or_pe_id"
    CGPEM_PE_ID_REQUIRED = "cgpem.pe_id_required"
    CGPEM_DATE_DECISION_FUTURE = "cgpem.date_decision_future"
    CGPEM_CORRESPONDANT_NOM_REQUIRED = "cgpem.correspondant_nom_required"
    CGPEM_CORRESPONDANT_NOM_EMPTY = "cgpem.correspondant_nom_empty"
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


_WARNINGS: Final = frozenset({Rule.CGPEM_CORRESPONDANT_NOM_EMPTY, Rule.REPORT_TRUNCATED})

#: Warnings reported once per file with the number of records concerned, not once per record.
AGGREGATED_RULES: Final = frozenset({Rule.CGPEM_CORRESPONDANT_NOM_EMPTY})

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
    Rule.FIELD_REQUIRED: "Un champ obligatoire est vide.",
    Rule.FIELD_MAX_LENGTH: "Un champ dépasse sa longueur maximale.",
    Rule.FIELD_LENGTH: "Un champ n'a pas sa longueur fixe.",
    Rule.FIELD_DIGITS: "Un champ numérique contient autre chose que des chiffres ou n'a pas le "
    "bon nombre de chiffres.",
    Rule.FIELD_DATE: "Une date n'est pas au format aaaa-mm-jj ou n'existe pas.",
    Rule.FIELD_CODE: "Une valeur n'appartient pas à la liste de codes du champ.",
    Rule.FIELD_UPPER_ASCII: "Un nom ou prénom doit être en majuscules sans accents.",
    Rule.FIELD_NIR: "Le NIR doit comporter 13 caractères (NIR sans clé).",
    Rule.FIELD_IDENTIFIANT_PE: "L'identifiant France Travail doit comporter 7 chiffres suivis "
    "d'une lettre ou d'un chiffre.",
    Rule.FIELD_CODE_ROME: "Le code ROME doit comporter une lettre suivie de 4 chiffres.",
    Rule.ENTETE_FICHIER: "Le type de fichier de l'en-tête ne correspond pas au flux.",
    Rule.ENTETE_PERIODICITE: "La périodicité de l'en-tête ne correspond pas au flux.",
    Rule.ENTETE_DEPARTEMENT: "Le code département de l'en-tête est invalide.",
    Rule.ENTETE_DEPARTEMENT_ESPACE: "Le département de l'en-tête diffère de celui de l'espace de "
    "dépôt.",
    Rule.ENTETE_DATE_REFERENCE: "La date de référence d'un flux mensuel doit être le premier du "
    "mois.",
    Rule.ENTETE_VERSION: "La version de structure n'est pas prise en charge.",
    Rule.FIN_DEPARTEMENT: "Le département du pied de fichier est invalide ou diffère de celui "
    "de l'en-tête.",
    Rule.FIN_DATE_REFERENCE: "La date de référence du pied de fichier diffère de celle de "
    "l'en-tête.",
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


def entete_rules(values: Mapping[str, str | None], *, departement: str | None) -> list[RuleHit]:
    """Header rules beyond single fields: the space's département, monthly reference date."""
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
    return hits


def _well_formed(name: str, value: str | None) -> bool:
    if value is None:
        return False
    if name == "departement":
        return is_departement_code(value)
    return parse_date(value) is not None and value == value.strip()


def fin_rules(values: Mapping[str, str | None], header: Mapping[str, str | None]) -> list[RuleHit]:
    """The footer repeats the header's département and reference date."""
    hits: list[RuleHit] = []
    for rule, name, template in (
        (
            Rule.FIN_DEPARTEMENT,
            "departement",
            "Le département du pied de fichier diffère de celui de l'en-tête ({}).",
        ),
        (
            Rule.FIN_DATE_REFERENCE,
            "date-reference",
            "La date de référence du pied de fichier diffère de celle de l'en-tête ({}).",
        ),
    ):
        in_footer, in_header = values.get(name), header.get(name)
        # A malformed value is already reported on its own; compare only well-formed ones.
        if (
            _well_formed(name, in_footer)
            and _well_formed(name, in_header)
            and (in_footer != in_header)
        ):
            hits.append(RuleHit(rule, name, template.format(in_header), in_footer))
    return hits
