"""The frame of a flow file: the header that fixes its structure, the footer that closes it.

The header tells the flow and the version (hence which checks apply); header and footer each
appear once, in their place; records outside the frame are reported and still checked.
"""

from __future__ import annotations

from typing import Final

from lxml import etree

from portal.flows.core.records import RecordChecks
from portal.flows.core.registry import get_spec, latest_spec, supported_versions
from portal.flows.core.rules import (
    Rule,
    RuleContext,
    entete_rules,
    fin_rules,
    footer_date_reading,
)
from portal.flows.core.spec import FlowSpec
from portal.flows.core.tally import Tally
from portal.flows.core.types import FlowType

BEFORE_HEADER: Final = 0
IN_RECORDS: Final = 1
AFTER_FOOTER: Final = 2

#: The CGPEM table copies `H` from PECDH while the flow is monthly: both are accepted.
PERIODICITE_READINGS: Final = {
    "M": "M : mensuel (tableau des flux)",
    "H": "H : hebdomadaire (table CGPEM, recopiée de l'en-tête PECDH)",
}


class Frame:
    """Where the file stands between header and footer, and what they said."""

    def __init__(
        self,
        *,
        expected_type: FlowType | None,
        departement: str | None,
        context: RuleContext,
        tally: Tally,
    ) -> None:
        self.expected_type = expected_type
        self.departement = departement
        self.context = context
        self.tally = tally
        self.checks: RecordChecks | None = None
        self.phase = BEFORE_HEADER
        self.header_seen = False
        self.fatal = False
        self.header: dict[str, str | None] = {}
        self.footer_count: tuple[str | None, int | None] | None = None
        # Which reading of the convention's contradictory tables the file follows.
        self.readings: dict[str, str] = {}

    @property
    def spec(self) -> FlowSpec | None:
        """The structure the header (or the announced flow) fixed, if any yet."""
        return self.checks.spec if self.checks is not None else None

    def on_misplaced_dossier(self, element: etree._Element) -> None:
        """A record before the header or after the footer: reported, then checked anyway."""
        if self.phase == BEFORE_HEADER:
            self._missing_header(element)
            if self.fatal:
                return
        if self.phase == AFTER_FOOTER:
            self.tally.add(
                Rule.STRUCTURE_ORDER,
                "Ce dossier figure après le pied de fichier <fin>.",
                line=element.sourceline,
                record=self.tally.record_count + 1,
                field="dossier",
            )
            self.phase = IN_RECORDS  # report it once, then check the records normally
        self.tally.record_count += 1
        assert self.checks is not None  # noqa: S101 - set with the phase IN_RECORDS
        self.checks.slow_record(element)
        self.phase = AFTER_FOOTER if self.footer_count is not None else IN_RECORDS

    def _missing_header(self, element: etree._Element) -> None:
        message = "L'en-tête <entete> manque : il doit être le premier élément de <flux>."
        if self.expected_type is None:
            self.tally.add(
                Rule.STRUCTURE_MISSING_ELEMENT,
                message + " Le type de flux ne peut pas être déterminé : analyse interrompue.",
                line=element.sourceline,
                field="entete",
            )
            self.fatal = True
            return
        self.tally.add(
            Rule.STRUCTURE_MISSING_ELEMENT, message, line=element.sourceline, field="entete"
        )
        self._use(latest_spec(self.expected_type))
        self.phase = IN_RECORDS

    def _use(self, spec: FlowSpec) -> None:
        self.checks = RecordChecks(spec, self.context, self.tally)

    def on_entete(self, element: etree._Element) -> None:
        """The header: flow and version first (nothing else is checked without them)."""
        if self.header_seen or self.phase != BEFORE_HEADER:
            self.tally.add(
                Rule.STRUCTURE_DUPLICATE_ELEMENT if self.header_seen else Rule.STRUCTURE_ORDER,
                "L'en-tête <entete> doit figurer une seule fois, en premier dans <flux>.",
                line=element.sourceline,
                field="entete",
            )
            return
        self.phase = IN_RECORDS
        self.header_seen = True
        raw: dict[str, etree._Element] = {}
        for child in element:
            if isinstance(child.tag, str):
                raw.setdefault(child.tag, child)
        fichier_element = raw.get("fichier")
        fichier = (fichier_element.text or "") if fichier_element is not None else ""
        detected = FlowType.from_fichier(fichier)
        line = fichier_element.sourceline if fichier_element is not None else element.sourceline
        if self.expected_type is not None and detected not in (None, self.expected_type):
            assert detected is not None  # noqa: S101 - narrowed by the test above
            self._fatal(
                Rule.ENTETE_FICHIER,
                f"Ce fichier est un flux {detected.value} (fichier {fichier}) alors qu'un flux "
                f"{self.expected_type.value} est attendu : rien d'autre n'a été vérifié.",
                line=line,
                field="entete/fichier",
                value=fichier,
            )
            return
        flow_type = self.expected_type or detected
        if flow_type is None:
            known = ", ".join(f"{kind.fichier} ({kind.value})" for kind in FlowType)
            self._fatal(
                Rule.ENTETE_FICHIER,
                f"Type de fichier inconnu dans l'en-tête : valeurs acceptées {known}. "
                "Rien d'autre n'a été vérifié.",
                line=line,
                field="entete/fichier",
                value=fichier,
            )
            return
        version_element = raw.get("version")
        version = (version_element.text or "") if version_element is not None else ""
        spec = get_spec(flow_type, version)
        if spec is None:
            versions = ", ".join(supported_versions(flow_type))
            problem = (
                f"La version de structure « {version} » n'est pas prise en charge"
                if version
                else "La version de structure (entete/version) manque"
            )
            self._fatal(
                Rule.ENTETE_VERSION,
                f"{problem} pour le flux {flow_type.value} (versions acceptées : {versions}). "
                "Rien d'autre n'a été vérifié.",
                line=version_element.sourceline
                if version_element is not None
                else element.sourceline,
                field="entete/version",
                value=version,
            )
            return
        self._use(spec)
        assert self.checks is not None  # noqa: S101 - set just above
        header = self.checks.check_element(element, spec.entete, record=None)
        self.header = dict(header.get("", {}))
        for hit in entete_rules(
            self.header, departement=self.departement, today=self.context.today
        ):
            self.tally.add_hit(element, "entete", hit, record=None)
        periodicite = self.header.get("periodicite")
        if flow_type is FlowType.CGPEM and periodicite in PERIODICITE_READINGS:
            self.readings["entete/periodicite"] = PERIODICITE_READINGS[periodicite]

    def on_fin(self, element: etree._Element) -> None:
        """The footer: once, last, agreeing with the header; its count is checked at the end."""
        if self.phase == BEFORE_HEADER:
            self._missing_header(element)
            if self.fatal:
                return
        if self.phase == AFTER_FOOTER or self.checks is None:
            self.tally.add(
                Rule.STRUCTURE_DUPLICATE_ELEMENT,
                "Le pied de fichier <fin> doit figurer une seule fois, en dernier dans <flux>.",
                line=element.sourceline,
                field="fin",
            )
            return
        self.phase = AFTER_FOOTER
        footer = self.checks.check_element(element, self.checks.spec.fin, record=None).get("", {})
        for hit in fin_rules(footer, self.header):
            self.tally.add_hit(element, "fin", hit, record=None)
        reading = footer_date_reading(footer, self.header)
        if reading is not None:
            self.readings["fin/date-reference"] = reading
        count = element.find("nb-dossier")
        self.footer_count = (
            footer.get("nb-dossier"),
            count.sourceline if count is not None else element.sourceline,
        )

    def _fatal(self, rule: Rule, message: str, *, line: int | None, field: str, value: str) -> None:
        self.tally.add(rule, message, line=line, field=field, value=value)
        self.fatal = True
