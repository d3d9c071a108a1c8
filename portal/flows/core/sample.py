"""Synthetic flow files: realistic but invented identities, streamed, ISO-8859-1.

Every NIR written here has the commune code `000`, which INSEE never assigns, so no generated
NIR can be a real person's; names are common French names drawn at random, e-mail addresses
use the reserved `example.org` domain. `errors` injects named rule violations (rule codes of
`portal.flows.core.rules.Rule`) and the result says where, so that tests can check that the
validator reports each at the right line, record and field.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import BinaryIO, Final

from portal.flows.core.codes import (
    AXES_TRAVAIL,
    CATEGORIES_INSCRIPTION,
    MOTIFS_CESSATION,
    NIVEAUX_FORMATION,
)
from portal.flows.core.registry import latest_spec
from portal.flows.core.rules import Rule
from portal.flows.core.spec import FieldSpec, FlowSpec, GroupSpec
from portal.flows.core.types import FlowType, Periodicity
from portal.flows.core.validator import paris_today
from portal.orgs.departements import is_departement_code

SURNAMES: Final = (
    "MARTIN", "BERNARD", "THOMAS", "PETIT", "ROBERT", "RICHARD", "DURAND", "DUBOIS", "MOREAU",
    "LAURENT", "SIMON", "MICHEL", "LEFEBVRE", "LEROY", "ROUX", "DAVID", "BERTRAND", "MOREL",
    "FOURNIER", "GIRARD", "BONNET", "DUPONT", "LAMBERT", "FONTAINE", "ROUSSEAU", "VINCENT",
    "MULLER", "LEFEVRE", "FAURE", "ANDRE", "MERCIER", "BLANC", "GUERIN", "BOYER", "GARNIER",
    "CHEVALIER", "FRANCOIS", "LEGRAND", "GAUTHIER", "GARCIA", "PERRIN", "ROBIN", "CLEMENT",
    "MORIN", "NICOLAS", "HENRY", "ROUSSEL", "MATHIEU", "MASSON", "MARCHAND", "DUVAL", "DENIS",
    "DUMONT", "LEMAIRE", "NOEL", "MEYER", "DUFOUR", "MEUNIER", "BRUN", "BLANCHARD", "JOLY",
    "RIVIERE", "LUCAS", "BRUNET", "GAILLARD", "BARBIER", "ARNAUD", "GERARD", "ROCHE", "RENARD",
    "SCHMITT", "LEROUX", "COLIN", "VIDAL", "CARON", "PICARD", "ROGER", "FABRE", "AUBERT",
    "LEMOINE", "RENAUD", "DUMAS", "LACROIX", "OLIVIER", "BOURGEOIS", "BENOIT", "LECLERCQ",
    "LECOMTE", "DUPUY", "HUBERT", "CARPENTIER", "DUPUIS", "VASSEUR", "BOUCHER", "FLEURY",
    "DELATTRE", "LE GALL", "LE ROUX", "DA SILVA", "D'ALMEIDA", "SAINT-MARTIN", "N'DIAYE",
)  # fmt: skip
FIRST_NAMES_F: Final = (
    "MARIE", "NATHALIE", "ISABELLE", "SYLVIE", "CATHERINE", "SANDRINE", "CELINE", "SOPHIE",
    "STEPHANIE", "VALERIE", "JULIE", "AURELIE", "EMILIE", "LAURA", "SARAH", "CAMILLE", "MANON",
    "CHLOE", "LEA", "INES", "AICHA", "FATIMA", "KARINE", "ANNE-SOPHIE", "MARIE-CLAIRE",
)  # fmt: skip
FIRST_NAMES_M: Final = (
    "JEAN", "PHILIPPE", "MICHEL", "ALAIN", "PATRICK", "NICOLAS", "CHRISTOPHE", "PIERRE", "DAVID",
    "SEBASTIEN", "JULIEN", "THOMAS", "KEVIN", "MAXIME", "ALEXANDRE", "ANTOINE", "LUCAS", "HUGO",
    "MEHDI", "KARIM", "YANNICK", "LAURENT", "FREDERIC", "JEAN-PIERRE", "JEAN-LUC",
)  # fmt: skip
TOWNS: Final[dict[str, tuple[str, ...]]] = {
    "62": ("Arras", "Lens", "Calais", "Boulogne-sur-Mer", "Béthune", "Saint-Omer", "Liévin"),
    "59": ("Lille", "Roubaix", "Tourcoing", "Dunkerque", "Valenciennes", "Douai", "Maubeuge"),
    "57": ("Metz", "Thionville", "Forbach", "Sarreguemines", "Sarrebourg"),
    "93": ("Saint-Denis", "Montreuil", "Aubervilliers", "Bobigny", "Aulnay-sous-Bois"),
}
DEFAULT_TOWNS: Final = ("Préfecture", "Sous-préfecture Nord", "Sous-préfecture Sud", "Vallée")
ORGANISMES: Final = (
    "Maison du Département Solidarité de {town}",
    "Centre communal d'action sociale de {town}",
    "Maison départementale des solidarités n° {n}, {town}",
    "Association Insertion et Emploi, {n} rue de la République, {town}",
    "France Travail {town}, {n} avenue Jean Jaurès",
    "Mission locale de {town}",
)
SERVICES: Final = ("Service insertion", "Pôle RSA", "Service social départemental", "")
ROME: Final = (
    ("K1201", "Action sociale"),
    ("D1106", "Vente en alimentation"),
    ("N4101", "Conduite de transport de marchandises"),
    ("G1603", "Personnel polyvalent en restauration"),
    ("J1301", "Personnel polyvalent des services hospitaliers"),
    ("F1703", "Maçonnerie"),
)
NATURE_WEIGHTS: Final = (("01", 35), ("02", 5), ("03", 5), ("04", 3), ("05", 20), ("06", 32))


@dataclass(frozen=True, slots=True)
class InjectedError:
    """Where an injected violation sits, i.e. what the validator is expected to report."""

    rule: Rule
    record: int | None  # None for the header, the footer, the prolog, aggregated warnings
    line: int | None
    field: str | None


@dataclass(frozen=True, slots=True)
class SampleResult:
    """What `write_sample` wrote."""

    flow_type: FlowType
    records: int
    departement: str
    date_reference: date
    injected: tuple[InjectedError, ...]
    size_bytes: int
    lines: int


@dataclass
class _Draft:
    """One element (header, record, footer) about to be written, and its injected oddities."""

    values: dict[str, str | bytes | None]
    absent_groups: set[str] = field(default_factory=set)
    attributes: dict[str, bytes] = field(default_factory=dict)
    leading_text: dict[str, bytes] = field(default_factory=dict)
    extra: dict[str, list[bytes]] = field(default_factory=dict)
    duplicate: str | None = None
    moved_after: tuple[str, str] | None = None  # (path, emitted after this sibling path)
    raw_lines: dict[str, bytes] = field(default_factory=dict)  # path -> whole line, verbatim
    pinned: set[str] = field(default_factory=set)  # footer fields that must not follow the header


# An injection edits a draft and returns, relative to the element, the path of the element whose
# line is reported and the field path the report names (None when it names none).
_Target = tuple[str, str | None]
_Injection = Callable[[_Draft, "_Context"], _Target]


@dataclass
class _Context:
    flow_type: FlowType
    departement: str
    date_reference: date
    rng: random.Random
    today: date


def injectable_rules(flow_type: FlowType) -> tuple[Rule, ...]:
    """The rules `write_sample` knows how to break for `flow_type`."""
    return tuple(
        rule for rule, (flows, _, _) in _INJECTIONS.items() if flows is None or flow_type in flows
    )


def write_sample(
    path_or_stream: Path | str | BinaryIO,
    flow_type: FlowType,
    records: int,
    departement: str,
    errors: Sequence[str] = (),
    seed: int | None = None,
    *,
    date_reference: date | None = None,
    today: date | None = None,
) -> SampleResult:
    """Write a synthetic `flow_type` file of `records` records, injecting the named `errors`.

    `today` (Paris time by default) bounds the fabrication date: a sample is never made in the
    future.
    """
    if not is_departement_code(departement):
        raise ValueError(f"invalid département code: {departement!r}")
    if records < 0:
        raise ValueError("records must be >= 0")
    rules = [_parse_rule(name, flow_type) for name in errors]
    record_rules = [rule for rule in rules if _INJECTIONS[rule][1] == "dossier"]
    if record_rules and records == 0:
        raise ValueError("record-level errors need at least one record")
    spec = latest_spec(flow_type)
    today = today or paris_today()
    reference = _reference_date(flow_type, date_reference or today)
    rng = random.Random(seed)  # noqa: S311 - fake data
    context = _Context(flow_type, departement, reference, rng, today)
    generator = _Generator(spec, departement, context)
    targets: dict[int, list[Rule]] = {}
    for index, rule in enumerate(record_rules):
        targets.setdefault(1 + index * records // len(record_rules), []).append(rule)
    element_rules = {
        where: [rule for rule in rules if _INJECTIONS[rule][1] == where]
        for where in ("prolog", "entete", "fin")
    }
    with _open(path_or_stream) as stream:
        writer = _LineWriter(stream)
        injected: list[InjectedError] = []
        aggregated: set[Rule] = set()
        prolog = b'<?xml version="1.0" encoding="ISO-8859-1"?>'
        for rule in element_rules["prolog"]:
            if rule is Rule.ENCODING_DECLARATION:
                prolog = b'<?xml version="1.0" encoding="UTF-8"?>'
                injected.append(InjectedError(rule, None, 1, None))
        writer.write_lines([prolog])
        for rule in element_rules["prolog"]:
            if rule is Rule.XML_DOCTYPE:
                injected.append(InjectedError(rule, None, writer.lines + 1, None))
                writer.write_lines([b"<!DOCTYPE flux>"])
        writer.write_lines([b"<flux>"])
        header = _Draft(generator.header_values())
        footer = _Draft(generator.footer_values(records))
        header_targets = [(r, _INJECTIONS[r][2](header, context)) for r in element_rules["entete"]]
        footer_targets = [(r, _INJECTIONS[r][2](footer, context)) for r in element_rules["fin"]]
        _sync_footer(header, footer)
        first = writer.lines + 1
        anchors = writer.write_element(spec.entete, header, indent=1)
        injected.extend(_located(r, None, first, anchors, t, "entete") for r, t in header_targets)
        for number in range(1, records + 1):
            draft = _Draft(generator.record_values())
            wanted = targets.get(number, [])
            record_targets = [(rule, _INJECTIONS[rule][2](draft, context)) for rule in wanted]
            first = writer.lines + 1
            anchors = writer.write_element(spec.dossier, draft, indent=1, track=bool(wanted))
            for rule, target in record_targets:
                if rule is Rule.XML_MALFORMED:
                    # The parser stops there: the report cannot tell which record it was in.
                    injected.append(_located(rule, None, first, anchors, target, "dossier"))
                elif rule in _AGGREGATED:
                    aggregated.add(rule)
                else:
                    injected.append(_located(rule, number, first, anchors, target, "dossier"))
                if rule is Rule.CGPEM_CORRESPONDANT_NOM_REQUIRED:
                    aggregated.add(Rule.CGPEM_CORRESPONDANT_NOM_EMPTY)
        first = writer.lines + 1
        anchors = writer.write_element(spec.fin, footer, indent=1)
        injected.extend(_located(r, None, first, anchors, t, "fin") for r, t in footer_targets)
        writer.write_lines([b"</flux>"])
        writer.flush()
        injected.extend(
            InjectedError(rule, None, None, "dossier/correspondant/nom") for rule in aggregated
        )
    return SampleResult(
        flow_type,
        records,
        departement,
        reference,
        tuple(sorted(injected, key=lambda e: (e.line is None, e.line or 0))),
        writer.size,
        writer.lines,
    )


def _parse_rule(name: str, flow_type: FlowType) -> Rule:
    try:
        rule = Rule(name.strip())
    except ValueError:
        raise ValueError(f"unknown rule: {name!r}") from None
    if rule not in injectable_rules(flow_type):
        raise ValueError(f"rule {rule.value} cannot be injected in a {flow_type.value} sample")
    return rule


def _reference_date(flow_type: FlowType, day: date) -> date:
    if Periodicity.MONTHLY in flow_type.periodicities:
        return day.replace(day=1)
    return day


def _field_path(prefix: str, path: str | None) -> str | None:
    if path is None:
        return None
    return f"{prefix}/{path}" if path else prefix


def _located(
    rule: Rule,
    record: int | None,
    first_line: int,
    anchors: dict[str, int],
    target: _Target,
    prefix: str,
) -> InjectedError:
    line_path, field_path = target
    return InjectedError(
        rule, record, first_line + anchors[line_path], _field_path(prefix, field_path)
    )


@contextmanager
def _open(target: Path | str | BinaryIO) -> Iterator[BinaryIO]:
    if isinstance(target, (str, Path)):
        with Path(target).open("wb") as stream:
            yield stream
    else:
        yield target


class _LineWriter:
    """Buffered writer that counts lines, so that injected errors get their line numbers."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._buffer: list[bytes] = []
        self._buffered = 0
        self.lines = 0
        self.size = 0

    def write_lines(self, lines: list[bytes]) -> None:
        for line in lines:
            self._buffer.append(line)
            self._buffer.append(b"\n")
            self._buffered += len(line) + 1
        self.lines += len(lines)
        if self._buffered > 1 << 20:
            self.flush()

    def flush(self) -> None:
        data = b"".join(self._buffer)
        self._stream.write(data)
        self.size += len(data)
        self._buffer.clear()
        self._buffered = 0

    def write_element(
        self, spec: GroupSpec, draft: _Draft, *, indent: int, track: bool = True
    ) -> dict[str, int]:
        """Write one element; returns path -> 0-based line offset (when `track`)."""
        lines: list[bytes] = []
        anchors: dict[str, int] | None = {} if track else None
        _render(spec, draft, "", indent, lines, anchors)
        self.write_lines(lines)
        return anchors or {}


def _render(
    spec: GroupSpec,
    draft: _Draft,
    path: str,
    indent: int,
    lines: list[bytes],
    anchors: dict[str, int] | None,
) -> None:
    pad = b"  " * indent
    name = spec.name.encode("ascii")
    if anchors is not None:
        anchors[path] = len(lines)
    lines.append(
        pad
        + b"<"
        + name
        + draft.attributes.get(path, b"")
        + b">"
        + draft.leading_text.get(path, b"")
    )
    children = list(spec.children)
    if draft.moved_after is not None:
        moved, after = draft.moved_after
        names = [child.name for child in children]
        moved_name, after_name = moved.rpartition("/")[2], after.rpartition("/")[2]
        if moved.rpartition("/")[0] == path and moved_name in names and after_name in names:
            child = children.pop(names.index(moved_name))
            children.insert([c.name for c in children].index(after_name) + 1, child)
    for child in children:
        child_path = f"{path}/{child.name}" if path else child.name
        if isinstance(child, GroupSpec):
            if child_path not in draft.absent_groups:
                _render(child, draft, child_path, indent + 1, lines, anchors)
            continue
        copies = 2 if draft.duplicate == child_path else 1
        for copy in range(copies):
            line = _field_line(child, child_path, draft, pad + b"  ")
            if line is None:
                continue
            if anchors is not None and (copy == 1 or child_path not in anchors):
                anchors[child_path] = len(lines)
            lines.append(line)
    for extra in draft.extra.get(path, []):
        tag = extra.split(b">", 1)[0].lstrip(b"<").decode("ascii")
        if anchors is not None:
            anchors[f"{path}/{tag}" if path else tag] = len(lines)
        lines.append(pad + b"  " + extra)
    lines.append(pad + b"</" + name + b">")


def _field_line(spec: FieldSpec, path: str, draft: _Draft, pad: bytes) -> bytes | None:
    if path in draft.raw_lines:
        return pad + draft.raw_lines[path]
    value = draft.values.get(path)
    if value is None:
        return None
    name = spec.name.encode("ascii")
    if value == "" or value == b"":
        return pad + b"<" + name + b"/>"
    if isinstance(value, str):
        if "&" in value or "<" in value or ">" in value:
            value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        data = value.encode("latin-1")
    else:
        data = value
    return pad + b"<" + name + b">" + data + b"</" + name + b">"


def _sync_footer(header: _Draft, footer: _Draft) -> None:
    """The footer repeats the header's well-formed values, unless it is itself the target."""
    for name in ("departement", "date-reference"):
        value = header.values.get(name)
        if name in footer.pinned or not isinstance(value, str):
            continue
        if (name == "departement" and is_departement_code(value)) or (
            name == "date-reference" and _is_date(value)
        ):
            footer.values[name] = value


def _is_date(value: str) -> bool:
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


class _Generator:
    """Draws plausible values for the fields of one flow."""

    def __init__(self, spec: FlowSpec, departement: str, context: _Context) -> None:
        self.spec = spec
        self.departement = departement
        self.context = context
        self.rng = context.rng
        self.towns = TOWNS.get(departement, DEFAULT_TOWNS)
        natures, weights = zip(*NATURE_WEIGHTS, strict=True)
        self._natures = natures
        self._nature_weights = weights

    def header_values(self) -> dict[str, str | bytes | None]:
        flow_type = self.context.flow_type
        reference = self.context.date_reference
        # A monthly file is made mid-month, a weekly one on its day; never after today.
        made = reference + timedelta(days=17) if reference.day == 1 else reference
        made = min(made, self.context.today)
        return {
            "fichier": flow_type.fichier,
            "periodicite": flow_type.periodicities[0].value,
            "departement": self.departement,
            "date-reference": reference.isoformat(),
            "date-fabrication": made.isoformat(),
            "version": self.spec.version,
        }

    def footer_values(self, records: int) -> dict[str, str | bytes | None]:
        return {
            "departement": self.departement,
            "date-reference": self.context.date_reference.isoformat(),
            "nb-dossier": str(records),
        }

    def record_values(self) -> dict[str, str | bytes | None]:
        if self.context.flow_type is FlowType.CGPEM:
            return self._cgpem()
        if self.context.flow_type is FlowType.PECGM:
            return self._pecgm()
        return self._pecdh()

    # -- identities ---------------------------------------------------------------------------

    def _person(self) -> tuple[dict[str, str | bytes | None], date]:
        rng = self.rng
        woman = rng.random() < 0.55
        born = date(1960, 1, 1) + timedelta(days=rng.randrange(46 * 365))
        nir_departement = self.departement[:2] if len(self.departement) == 3 else self.departement
        # Commune 000 is never assigned by INSEE: the NIR is well-formed but cannot be real.
        nir = (
            f"{2 if woman else 1}{born.year % 100:02d}{born.month:02d}{nir_departement}000"
            f"{rng.randrange(1, 1000):03d}"
        )
        surname = rng.choice(SURNAMES)
        values: dict[str, str | bytes | None] = {
            "individu/nir": nir,
            "individu/nom-naissance": surname,
            "individu/nom-marital": rng.choice(SURNAMES) if woman and rng.random() < 0.3 else None,
            "individu/prenom": rng.choice(FIRST_NAMES_F if woman else FIRST_NAMES_M),
            "individu/date-naissance": born.isoformat(),
        }
        return values, born

    def _identifiant_pe(self) -> str:
        digits = f"{self.rng.randrange(10_000_000):07d}"
        if self.rng.random() < 0.8:
            return digits + self.rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ")
        return digits + str(self.rng.randrange(10))

    def _day_before_reference(self, max_days: int) -> str:
        return (
            self.context.date_reference - timedelta(days=self.rng.randint(1, max_days))
        ).isoformat()

    # -- CGPEM ---------------------------------------------------------------------------------

    def _cgpem(self) -> dict[str, str | bytes | None]:
        rng = self.rng
        values, _ = self._person()
        if rng.random() < 0.12:  # known to France Travail only by its identifier
            values["individu/nir"] = None if rng.random() < 0.5 else ""
            values["individu/code-pe"] = f"{rng.randrange(100, 1000)}"
            values["individu/identifiant-pe"] = self._identifiant_pe()
        elif rng.random() < 0.6:
            values["individu/code-pe"] = f"{rng.randrange(100, 1000)}"
            values["individu/identifiant-pe"] = self._identifiant_pe()
        values["orientation/nature"] = rng.choices(self._natures, self._nature_weights)[0]
        values["orientation/date-decision"] = self._day_before_reference(900)
        town = rng.choice(self.towns)
        first = rng.choice(FIRST_NAMES_F + FIRST_NAMES_M)
        last = rng.choice(SURNAMES)
        email_name = f"{first}.{last}".lower().replace(" ", "").replace("'", "")
        values.update(
            {
                "correspondant/organisme": rng.choice(ORGANISMES).format(
                    town=town, n=rng.randrange(1, 40)
                ),
                "correspondant/service": rng.choice(SERVICES),
                "correspondant/nom": last,
                "correspondant/prenom": first,
                "correspondant/telephone": f"01990{rng.randrange(100_000):05d}",
                "correspondant/email": f"{email_name}@example.org"[:60],
            }
        )
        return values

    # -- PECGM / PECDH -------------------------------------------------------------------------

    def _inscription(self, values: dict[str, str | bytes | None]) -> None:
        rng = self.rng
        values["inscription/date-debut-ide"] = self._day_before_reference(1500)
        roll = rng.random()
        if roll < 0.1:
            values["inscription/date-cessation-ide"] = self._day_before_reference(60)
            values["inscription/motif-cessation-ide"] = rng.choice(MOTIFS_CESSATION)
            values["inscription/lib-cessation-ide"] = "Cessation d'inscription"
        elif roll < 0.15:
            values["inscription/date-radiation-ide"] = self._day_before_reference(60)
            values["inscription/motif-radiation-ide"] = rng.choice(("90", "91", "92"))
            values["inscription/lib-radiation-ide"] = "Radiation administrative"

    def _commune(self) -> str:
        code = self.departement
        return code + f"{self.rng.randrange(1, 10 ** (5 - len(code))):0{5 - len(code)}d}"

    def _postcode(self) -> str:
        if self.departement in ("2A", "2B"):
            return "20000"
        return (self.departement + "000")[:5]

    def _pecdh(self) -> dict[str, str | bytes | None]:
        values, _ = self._person()
        values["individu/certification-identite"] = "O" if self.rng.random() < 0.9 else "N"
        values["individu/commune-residence"] = self._commune()
        values["allocataire/code-pe"] = f"{self.rng.randrange(100, 1000)}"
        values["allocataire/identifiant-pe"] = self._identifiant_pe()
        self._inscription(values)
        return values

    def _pecgm(self) -> dict[str, str | bytes | None]:
        rng = self.rng
        values = self._pecdh()
        values["allocataire/identifiant-caf"] = f"{rng.randrange(10_000_000):07d}"
        values["allocataire/identifiant-msa"] = "" if rng.random() < 0.95 else "1234567890123"
        category = rng.choice((*CATEGORIES_INSCRIPTION, ""))
        values["inscription/code-categorie"] = category
        values["inscription/lib-categorie"] = (
            f"Demandeur d'emploi de catégorie {category}" if category else "Dispensé"
        )
        values["inscription/code-situation"] = rng.choice(("ACC", "FOR", "ENT"))
        values["inscription/lib-situation"] = "Situation déclarée"
        town = rng.choice(self.towns)
        values.update(
            {
                "suivi/structure-principale/nom": f"FRANCE TRAVAIL {town.upper()}"[:27],
                "suivi/structure-principale/voie": f"{rng.randrange(1, 99)} RUE DE LA GARE",
                "suivi/structure-principale/complement": "",
                "suivi/structure-principale/code-postal": self._postcode(),
                "suivi/structure-principale/cedex": "",
                "suivi/structure-principale/bureau": town.upper()[:26],
                "formation/code-niveau": rng.choice(NIVEAUX_FORMATION),
                "formation/lib-niveau": "Niveau de formation déclaré",
                "formation/code-secteur": f"{rng.randrange(10_000, 100_000)}",
                "formation/lib-secteur": "Secteur de formation",
                "ppae/conseiller-pe": f"{rng.choice(FIRST_NAMES_F)} {rng.choice(SURNAMES)}"[:27],
                "ppae/date-signature": self._day_before_reference(400),
                "ppae/date-notification": self._day_before_reference(400),
                "ppae/axe/code": rng.choice(tuple(AXES_TRAVAIL)),
                "ppae/axe/libelle": "Axe de travail principal",
                "ppae/date-dernier-ent": self._day_before_reference(90),
            }
        )
        code, label = rng.choice(ROME)
        values["rome-v3/code-rome"] = code
        values["rome-v3/lib-rome"] = label
        if rng.random() < 0.8:
            values["ppae/axe/libelle"] = AXES_TRAVAIL[str(values["ppae/axe/code"])][:40]
        if rng.random() < 0.2:
            values.update(
                {
                    "suivi/structure-deleguee/nom": "CAP EMPLOI",
                    "suivi/structure-deleguee/voie": "2 PLACE DU MARCHE",
                    "suivi/structure-deleguee/complement": "",
                    "suivi/structure-deleguee/code-postal": self._postcode(),
                    "suivi/structure-deleguee/cedex": "",
                    "suivi/structure-deleguee/bureau": town.upper()[:26],
                }
            )
        return values


_CGPEM: Final = frozenset({FlowType.CGPEM})
_PE: Final = frozenset({FlowType.PECGM, FlowType.PECDH})
_PECGM: Final = frozenset({FlowType.PECGM})
_AGGREGATED: Final = frozenset({Rule.CGPEM_CORRESPONDANT_NOM_EMPTY})


def _set(path: str, value: str | bytes | None) -> _Injection:
    def inject(draft: _Draft, context: _Context) -> _Target:
        draft.values[path] = value
        return path, path

    return inject


def _by_flow(cgpem: _Injection, other: _Injection) -> _Injection:
    def inject(draft: _Draft, context: _Context) -> _Target:
        return (cgpem if context.flow_type is FlowType.CGPEM else other)(draft, context)

    return inject


def _too_long(draft: _Draft, context: _Context) -> _Target:
    if context.flow_type is FlowType.CGPEM:
        path, limit = "correspondant/organisme", 90
    elif context.flow_type is FlowType.PECGM:
        path, limit = "inscription/lib-situation", 45
    else:
        path, limit = "inscription/lib-radiation-ide", 75
        draft.values["inscription/date-radiation-ide"] = context.date_reference.isoformat()
        draft.values["inscription/motif-radiation-ide"] = "90"
    draft.values[path] = ("Texte trop long pour ce champ " * 5)[: limit + 1]
    return path, path


def _bad_code_pe(draft: _Draft, context: _Context) -> _Target:
    group = "individu" if context.flow_type is FlowType.CGPEM else "allocataire"
    draft.values[f"{group}/code-pe"] = "62A"
    draft.values[f"{group}/identifiant-pe"] = "1234567A"
    return f"{group}/code-pe", f"{group}/code-pe"


def _nir_or_pe(draft: _Draft, context: _Context) -> _Target:
    for name in ("nir", "code-pe", "identifiant-pe"):
        draft.values[f"individu/{name}"] = None
    return "individu", "individu/nir"


def _pe_id_required(draft: _Draft, context: _Context) -> _Target:
    draft.values["individu/code-pe"] = "621"
    draft.values["individu/identifiant-pe"] = ""
    return "individu/identifiant-pe", "individu/identifiant-pe"


def _decision_future(draft: _Draft, context: _Context) -> _Target:
    path = "orientation/date-decision"
    draft.values[path] = (context.date_reference + timedelta(days=400)).isoformat()
    return path, path


def _correspondant_without_name(draft: _Draft, context: _Context) -> _Target:
    draft.values["correspondant/nom"] = ""
    return "correspondant/nom", "correspondant/nom"


def _correspondant_empty(draft: _Draft, context: _Context) -> _Target:
    for name in ("organisme", "service", "nom", "prenom", "telephone", "email"):
        draft.values[f"correspondant/{name}"] = None
    return "correspondant", "correspondant/nom"


def _missing(draft: _Draft, context: _Context) -> _Target:
    draft.values["orientation/date-decision"] = None
    return "orientation", "orientation/date-decision"


def _born_in_the_future(draft: _Draft, context: _Context) -> _Target:
    path = "individu/date-naissance"
    draft.values[path] = (context.today + timedelta(days=400)).isoformat()
    return path, path


def _unexpected(draft: _Draft, context: _Context) -> _Target:
    draft.extra.setdefault("individu", []).append(b"<commentaire>a verifier</commentaire>")
    return "individu/commentaire", "individu/commentaire"


def _duplicate(draft: _Draft, context: _Context) -> _Target:
    draft.duplicate = "individu/nom-naissance"
    draft.values["individu/nom-naissance"] = draft.values["individu/nom-naissance"] or "MARTIN"
    return "individu/nom-naissance", "individu/nom-naissance"


def _order(draft: _Draft, context: _Context) -> _Target:
    draft.moved_after = ("individu/nom-naissance", "individu/prenom")
    draft.values["individu/nom-naissance"] = draft.values["individu/nom-naissance"] or "MARTIN"
    return "individu/nom-naissance", "individu/nom-naissance"


def _attribute(draft: _Draft, context: _Context) -> _Target:
    draft.attributes["individu"] = b' id="42"'
    return "individu", "individu"


def _text(draft: _Draft, context: _Context) -> _Target:
    group = "orientation" if context.flow_type is FlowType.CGPEM else "inscription"
    draft.leading_text[group] = b"texte libre"
    return group, group


def _encoded(raw: bytes) -> _Injection:
    def inject(draft: _Draft, context: _Context) -> _Target:
        if context.flow_type is FlowType.CGPEM:
            path = "correspondant/organisme"
        else:
            path = "inscription/lib-cessation-ide"
            draft.values["inscription/date-cessation-ide"] = (
                context.date_reference - timedelta(days=3)
            ).isoformat()
            draft.values["inscription/motif-cessation-ide"] = "11"
            for name in ("date-radiation-ide", "motif-radiation-ide", "lib-radiation-ide"):
                draft.values[f"inscription/{name}"] = None
        draft.values[path] = b"Maison du D" + raw + b"partement"
        return path, path

    return inject


def _malformed(draft: _Draft, context: _Context) -> _Target:
    draft.raw_lines["individu/nom-naissance"] = b"<nom-naissance>MARTIN</nom>"
    draft.values["individu/nom-naissance"] = "MARTIN"
    return "individu/nom-naissance", None


def _cessation(draft: _Draft, context: _Context) -> _Target:
    draft.values["inscription/date-cessation-ide"] = None
    draft.values["inscription/motif-cessation-ide"] = "11"
    draft.values["inscription/lib-cessation-ide"] = "Reprise d'emploi"
    for name in ("date-radiation-ide", "motif-radiation-ide", "lib-radiation-ide"):
        draft.values[f"inscription/{name}"] = None
    return "inscription", "inscription/date-cessation-ide"


def _radiation(draft: _Draft, context: _Context) -> _Target:
    draft.values["inscription/date-radiation-ide"] = (
        context.date_reference - timedelta(days=5)
    ).isoformat()
    draft.values["inscription/motif-radiation-ide"] = None
    draft.values["inscription/lib-radiation-ide"] = None
    for name in ("date-cessation-ide", "motif-cessation-ide", "lib-cessation-ide"):
        draft.values[f"inscription/{name}"] = None
    return "inscription", "inscription/motif-radiation-ide"


def _header_set(name: str, value: Callable[[_Context], str]) -> _Injection:
    def inject(draft: _Draft, context: _Context) -> _Target:
        draft.values[name] = value(context)
        return name, name

    return inject


def _footer_set(name: str, value: Callable[[_Context], str]) -> _Injection:
    def inject(draft: _Draft, context: _Context) -> _Target:
        draft.values[name] = value(context)
        draft.pinned.add(name)
        return name, name

    return inject


def _nb_dossier(draft: _Draft, context: _Context) -> _Target:
    draft.values["nb-dossier"] = str(int(str(draft.values["nb-dossier"])) + 1)
    return "nb-dossier", "nb-dossier"


def _mid_month(context: _Context) -> str:
    return context.date_reference.replace(day=15).isoformat()


def _previous_month(context: _Context) -> str:
    return (context.date_reference.replace(day=1) - timedelta(days=1)).replace(day=1).isoformat()


def _other_departement(context: _Context) -> str:
    return "62" if context.departement == "59" else "59"


def _prolog(draft: _Draft, context: _Context) -> _Target:
    return "", None  # written by write_sample itself


# rule -> (flows or None for all, where, injection)
_INJECTIONS: Final[dict[Rule, tuple[frozenset[FlowType] | None, str, _Injection]]] = {
    Rule.ENCODING_DECLARATION: (None, "prolog", _prolog),
    Rule.XML_DOCTYPE: (None, "prolog", _prolog),
    Rule.ENCODING_UTF8: (None, "dossier", _encoded("é".encode())),
    Rule.ENCODING_C1_CONTROL: (None, "dossier", _encoded(b"\x92")),
    Rule.ENCODING_CHAR_REFERENCE: (None, "dossier", _encoded(b"&#8364;")),
    Rule.XML_MALFORMED: (None, "dossier", _malformed),
    # PECGM and PECDH records have no mandatory field, hence no mandatory group.
    Rule.STRUCTURE_MISSING_ELEMENT: (_CGPEM, "dossier", _missing),
    Rule.STRUCTURE_UNEXPECTED_ELEMENT: (None, "dossier", _unexpected),
    Rule.STRUCTURE_DUPLICATE_ELEMENT: (None, "dossier", _duplicate),
    Rule.STRUCTURE_ORDER: (None, "dossier", _order),
    Rule.STRUCTURE_UNEXPECTED_ATTRIBUTE: (None, "dossier", _attribute),
    Rule.STRUCTURE_UNEXPECTED_TEXT: (None, "dossier", _text),
    Rule.FIELD_REQUIRED: (_CGPEM, "dossier", _set("individu/nom-naissance", "")),
    Rule.FIELD_MAX_LENGTH: (None, "dossier", _too_long),
    Rule.FIELD_LENGTH: (_PE, "dossier", _set("individu/commune-residence", "6204")),
    Rule.FIELD_DIGITS: (None, "dossier", _bad_code_pe),
    Rule.FIELD_DATE: (None, "dossier", _set("individu/date-naissance", "1985-02-30")),
    Rule.FIELD_CODE: (
        None,
        "dossier",
        _by_flow(_set("orientation/nature", "07"), _set("individu/certification-identite", "X")),
    ),
    Rule.FIELD_UPPER_ASCII: (_CGPEM, "dossier", _set("individu/prenom", "Hélène")),
    Rule.FIELD_NAME_FORMAT: (_CGPEM, "dossier", _set("individu/prenom", "JEAN.PIERRE")),
    Rule.INDIVIDU_DATE_NAISSANCE_FUTURE: (None, "dossier", _born_in_the_future),
    Rule.FIELD_NIR: (None, "dossier", _set("individu/nir", "185076200001")),
    Rule.FIELD_IDENTIFIANT_PE: (
        None,
        "dossier",
        _by_flow(
            _set("individu/identifiant-pe", "A1234567"),
            _set("allocataire/identifiant-pe", "A1234567"),
        ),
    ),
    Rule.FIELD_CODE_ROME: (_PECGM, "dossier", _set("rome-v3/code-rome", "12345")),
    Rule.CGPEM_NIR_OR_PE_ID: (_CGPEM, "dossier", _nir_or_pe),
    Rule.CGPEM_PE_ID_REQUIRED: (_CGPEM, "dossier", _pe_id_required),
    Rule.CGPEM_DATE_DECISION_FUTURE: (_CGPEM, "dossier", _decision_future),
    Rule.CGPEM_CORRESPONDANT_NOM_REQUIRED: (_CGPEM, "dossier", _correspondant_without_name),
    Rule.CGPEM_CORRESPONDANT_NOM_EMPTY: (_CGPEM, "dossier", _correspondant_empty),
    Rule.INSCRIPTION_CESSATION_INCOMPLETE: (_PE, "dossier", _cessation),
    Rule.INSCRIPTION_RADIATION_INCOMPLETE: (_PE, "dossier", _radiation),
    Rule.ENTETE_FICHIER: (None, "entete", _header_set("fichier", lambda c: "XXXX")),
    Rule.ENTETE_PERIODICITE: (None, "entete", _header_set("periodicite", lambda c: "Q")),
    Rule.ENTETE_DEPARTEMENT: (None, "entete", _header_set("departement", lambda c: "20")),
    Rule.ENTETE_DEPARTEMENT_ESPACE: (
        None,
        "entete",
        _header_set("departement", _other_departement),
    ),
    Rule.ENTETE_VERSION: (None, "entete", _header_set("version", lambda c: "002,0")),
    Rule.ENTETE_DATE_FABRICATION_FUTURE: (
        None,
        "entete",
        _header_set("date-fabrication", lambda c: (c.today + timedelta(days=30)).isoformat()),
    ),
    Rule.FIN_DEPARTEMENT: (None, "fin", _footer_set("departement", _other_departement)),
    Rule.FIN_DATE_REFERENCE: (None, "fin", _footer_set("date-reference", _previous_month)),
    Rule.FIN_NB_DOSSIER: (None, "fin", _nb_dossier),
}
# Monthly flows only: a weekly reference date is any day.
_INJECTIONS[Rule.ENTETE_DATE_REFERENCE] = (
    frozenset({FlowType.CGPEM, FlowType.PECGM}),
    "entete",
    _header_set("date-reference", _mid_month),
)
