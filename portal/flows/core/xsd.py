"""The XSD of each flow: rendered from its spec, shipped in `xsd/`, loaded for validation.

Run `python -m portal.flows.core.xsd` to rewrite the shipped files after changing a spec.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date
from functools import cache
from importlib import resources
from xml.sax.saxutils import quoteattr

from lxml import etree

from portal.flows.core.registry import all_specs
from portal.flows.core.spec import CleanProfile, FieldKind, FieldSpec, FlowSpec, GroupSpec

XS_NAMESPACE = "http://www.w3.org/2001/XMLSchema"
_EMPTY_TYPE = "vide"
#: At least one character that is not XML white space (the `is_filled` of the rules).
NON_BLANK_PATTERN = "[\\s\\S]*\\S[\\s\\S]*"

# The schema documents are ours, but parse them with the same hardening as any XML.
_SAFE_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
)


def render_xsd(spec: FlowSpec) -> str:
    """The XSD text of `spec` (UTF-8, deterministic)."""
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f"<!-- Flux {spec.flow_type.value}, structure {spec.version}. Généré depuis "
        "portal/flows/core/versions/v*.py par `python -m portal.flows.core.xsd` : "
        "ne pas modifier à la main. -->",
        f'<xs:schema xmlns:xs="{XS_NAMESPACE}" elementFormDefault="unqualified">',
        f'  <xs:simpleType name="{_EMPTY_TYPE}">',
        '    <xs:restriction base="xs:string"><xs:length value="0"/></xs:restriction>',
        "  </xs:simpleType>",
        '  <xs:element name="flux">',
        "    <xs:complexType>",
        "      <xs:sequence>",
        '        <xs:element name="entete" type="Entete"/>',
        '        <xs:element name="dossier" type="Dossier" minOccurs="0" maxOccurs="unbounded"/>',
        '        <xs:element name="fin" type="Fin"/>',
        "      </xs:sequence>",
        "    </xs:complexType>",
        "  </xs:element>",
    ]
    for type_name, group in (("Entete", spec.entete), ("Dossier", spec.dossier), ("Fin", spec.fin)):
        lines.append(f'  <xs:complexType name="{type_name}">')
        lines.extend(_sequence(group, 4))
        lines.append("  </xs:complexType>")
    lines.append("</xs:schema>")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class _Clean:
    """Rendering the stricter "clean record" variant of a record type."""

    profile: CleanProfile
    today: str


def _sequence(
    group: GroupSpec, indent: int, *, clean: _Clean | None = None, path: str = ""
) -> list[str]:
    pad = " " * indent
    identity = clean.profile.identity if clean is not None else None
    if clean is not None and identity is not None and identity.group == path:
        return _identity_choice(group, indent, clean, path)
    lines = [f"{pad}<xs:sequence>"]
    lines.extend(_particles(group.children, indent + 2, clean=clean, path=path))
    lines.append(f"{pad}</xs:sequence>")
    return lines


def _particles(
    children: tuple[FieldSpec | GroupSpec, ...] | list[FieldSpec | GroupSpec],
    indent: int,
    *,
    clean: _Clean | None,
    path: str,
) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    for child in children:
        child_path = f"{path}/{child.name}" if path else child.name
        if isinstance(child, GroupSpec):
            # A clean record has the groups that hold a field it requires to be non-blank.
            required = child.required or (
                clean is not None
                and any(p.startswith(f"{child_path}/") for p in clean.profile.non_blank)
            )
            occurs = "" if required else ' minOccurs="0"'
            lines.append(f'{pad}<xs:element name="{child.name}"{occurs}>')
            lines.extend(_documentation(child.label, indent + 2))
            lines.append(f"{pad}  <xs:complexType>")
            lines.extend(_sequence(child, indent + 4, clean=clean, path=child_path))
            lines.append(f"{pad}  </xs:complexType>")
            lines.append(f"{pad}</xs:element>")
        else:
            lines.extend(_field(child, indent, variant=_variant(clean, child_path), clean=clean))
    return lines


def _variant(clean: _Clean | None, path: str) -> str:
    if clean is None:
        return ""
    if path in clean.profile.non_blank:
        return "non_blank"
    if path in clean.profile.empty:
        return "empty"
    if path in clean.profile.not_after_today:
        return "not_after_today"
    return ""


def _identity_choice(group: GroupSpec, indent: int, clean: _Clean, path: str) -> list[str]:
    """nir and any tail, or no nir and both France Travail identifiers (XSD 1.0, deterministic)."""
    identity = clean.profile.identity
    assert identity is not None  # noqa: S101 - checked by the caller
    names = [child.name for child in group.children]
    if names[0] != identity.nir or names[-2:] != [identity.code, identity.identifier]:
        raise ValueError(f"identity fields of {group.name} are not where the fast path expects")
    nir, code, identifier = group.children[0], group.children[-2], group.children[-1]
    assert isinstance(nir, FieldSpec)  # noqa: S101 - names match fields of the spec
    assert isinstance(code, FieldSpec)  # noqa: S101 - as above
    assert isinstance(identifier, FieldSpec)  # noqa: S101 - as above
    middle = list(group.children[1:-2])
    pad = " " * indent

    def strict(spec: FieldSpec, at: int) -> list[str]:
        return _field(spec, at, variant="non_empty", clean=clean)

    return [
        f"{pad}<xs:choice>",
        f"{pad}  <xs:sequence>",
        *strict(nir, indent + 4),
        *_particles(middle, indent + 4, clean=clean, path=path),
        f'{pad}    <xs:choice minOccurs="0">',
        f"{pad}      <xs:sequence>",
        *strict(code, indent + 8),
        *strict(identifier, indent + 8),
        f"{pad}      </xs:sequence>",
        *strict(identifier, indent + 6),
        f"{pad}    </xs:choice>",
        f"{pad}  </xs:sequence>",
        f"{pad}  <xs:sequence>",
        *_particles(middle, indent + 4, clean=clean, path=path),
        *strict(code, indent + 4),
        *strict(identifier, indent + 4),
        f"{pad}  </xs:sequence>",
        f"{pad}</xs:choice>",
    ]


def _documentation(label: str, indent: int) -> list[str]:
    if not label:
        return []
    pad = " " * indent
    text = label.replace("&", "&amp;").replace("<", "&lt;")
    return [f"{pad}<xs:annotation><xs:documentation>{text}</xs:documentation></xs:annotation>"]


def _field(
    spec: FieldSpec, indent: int, *, variant: str = "", clean: _Clean | None = None
) -> list[str]:
    pad = " " * indent
    if clean is not None and spec.advice is not None:
        # Narrower than the field's pattern (see Advice): a clean record draws no warning.
        spec = replace(spec, pattern=spec.advice.pattern)
    if variant == "empty":
        return [f'{pad}<xs:element name="{spec.name}" type="{_EMPTY_TYPE}" minOccurs="0"/>']
    required = spec.required or variant in ("non_blank", "non_empty")
    extra: list[str] = []
    if variant == "non_blank" and spec.pattern is None and not spec.codes:
        extra.append(_facet("pattern", NON_BLANK_PATTERN))
    if variant == "not_after_today" and clean is not None:
        extra.append(_facet("maxInclusive", clean.today))
    occurs = "" if required else ' minOccurs="0"'
    lines = [f'{pad}<xs:element name="{spec.name}"{occurs}>']
    if clean is None:
        lines.extend(_documentation(f"{spec.label} ({spec.describe()})".strip(), indent + 2))
    with_empty = not required and _needs_empty_member(spec)
    restriction = _restriction(
        spec, indent + 8 if with_empty else indent + 4, required=required, extra=extra
    )
    if with_empty:
        lines.append(f"{pad}  <xs:simpleType>")
        lines.append(f'{pad}    <xs:union memberTypes="{_EMPTY_TYPE}">')
        lines.append(f"{pad}      <xs:simpleType>")
        lines.extend(restriction)
        lines.append(f"{pad}      </xs:simpleType>")
        lines.append(f"{pad}    </xs:union>")
        lines.append(f"{pad}  </xs:simpleType>")
    else:
        lines.append(f"{pad}  <xs:simpleType>")
        lines.extend(restriction)
        lines.append(f"{pad}  </xs:simpleType>")
    lines.append(f"{pad}</xs:element>")
    return lines


def _needs_empty_member(spec: FieldSpec) -> bool:
    """An optional field may be empty: facets other than maxLength would refuse the empty text."""
    if spec.required:
        return False
    return (
        spec.kind is not FieldKind.TEXT
        or spec.length is not None
        or bool(spec.codes)
        or spec.pattern is not None
    )


def _restriction(
    spec: FieldSpec, indent: int, *, required: bool, extra: list[str] | None = None
) -> list[str]:
    pad = " " * indent
    facets: list[str] = []
    if spec.kind is FieldKind.DATE:
        base = "xs:date"
        facets.append(_facet("pattern", "[0-9]{4}-[0-9]{2}-[0-9]{2}"))
    elif spec.kind is FieldKind.DIGITS:
        base = "xs:string"
        if spec.length is not None:
            facets.append(_facet("pattern", f"[0-9]{{{spec.length}}}"))
        else:
            facets.append(_facet("pattern", f"[0-9]{{1,{spec.max_length}}}"))
    else:
        base = "xs:string"
        if spec.length is not None:
            facets.append(_facet("length", str(spec.length)))
        else:
            if required and not spec.codes and spec.pattern is None:
                facets.append(_facet("minLength", "1"))
            if spec.max_length is not None:
                facets.append(_facet("maxLength", str(spec.max_length)))
    facets.extend(_facet("enumeration", code) for code in spec.codes)
    if spec.pattern is not None:
        facets.append(_facet("pattern", spec.pattern))
    facets.extend(extra or ())
    return [
        f'{pad}<xs:restriction base="{base}">',
        *(f"{pad}  {facet}" for facet in facets),
        f"{pad}</xs:restriction>",
    ]


def _facet(name: str, value: str) -> str:
    return f"<xs:{name} value={quoteattr(value)}/>"


def xsd_bytes(spec: FlowSpec) -> bytes:
    """The shipped XSD file of `spec`."""
    return resources.files("portal.flows.core").joinpath("xsd").joinpath(spec.xsd_name).read_bytes()


@cache
def _record_schema_document(spec: FlowSpec) -> bytes:
    """The shipped XSD plus global declarations of `entete`, `dossier` and `fin`.

    The shipped schema only allows `flux` as a root; declaring the three children globally
    (with the very same types) lets the validator check each of them as it streams by, with
    line numbers, and forget it afterwards.
    """
    root = etree.fromstring(xsd_bytes(spec), _SAFE_PARSER)
    for name, type_name in (("entete", "Entete"), ("dossier", "Dossier"), ("fin", "Fin")):
        etree.SubElement(root, f"{{{XS_NAMESPACE}}}element", name=name, type=type_name)
    return etree.tostring(root)


def record_schema(spec: FlowSpec) -> etree.XMLSchema:
    """A fresh compiled schema for validating the header, each record and the footer.

    Compiled per validation (a few milliseconds) rather than shared, because lxml validators
    keep per-run state and are not meant to be used by two threads at once.
    """
    document = etree.fromstring(_record_schema_document(spec), _SAFE_PARSER)
    return etree.XMLSchema(document)


def render_clean_record_type(spec: FlowSpec, today: date) -> str:
    """The `DossierPropre` type: records of this type break none of the flow's record rules."""
    if spec.clean is None:
        raise ValueError(f"{spec.flow_type.value} {spec.version} has no clean profile")
    clean = _Clean(spec.clean, today.isoformat())
    lines = [f'<xs:complexType xmlns:xs="{XS_NAMESPACE}" name="DossierPropre">']
    lines.extend(_sequence(spec.dossier, 2, clean=clean))
    lines.append("</xs:complexType>")
    return "\n".join(lines)


def clean_record_schema(spec: FlowSpec, today: date) -> etree.XMLSchema | None:
    """A schema whose `dossier` accepts only records that break no record rule (fast path).

    None when the flow has no clean profile. Every record it accepts is also valid against the
    flow's XSD (it only narrows the types), so one C-level check settles most records.
    """
    if spec.clean is None:
        return None
    root = etree.fromstring(xsd_bytes(spec), _SAFE_PARSER)
    root.append(etree.fromstring(render_clean_record_type(spec, today).encode(), _SAFE_PARSER))
    etree.SubElement(root, f"{{{XS_NAMESPACE}}}element", name="dossier", type="DossierPropre")
    return etree.XMLSchema(root)


def spelled_clean_record_schema(
    spec: FlowSpec, today: date, spellings: Mapping[str, str]
) -> etree.XMLSchema | None:
    """The clean schema with the elements named as a file spells them (canonical -> spelling).

    Records written with the convention's spellings then pass in C as canonical ones do; a
    record it accepts is the clean record it would be once renamed.
    """
    if spec.clean is None:
        return None
    root = etree.fromstring(xsd_bytes(spec), _SAFE_PARSER)
    root.append(etree.fromstring(render_clean_record_type(spec, today).encode(), _SAFE_PARSER))
    etree.SubElement(root, f"{{{XS_NAMESPACE}}}element", name="dossier", type="DossierPropre")
    declared = f"{{{XS_NAMESPACE}}}element"
    for node in root.iter(declared):
        spelled = spellings.get(node.get("name", ""))
        if spelled is not None:
            node.set("name", spelled)
    return etree.XMLSchema(root)


def main() -> None:
    """Rewrite the shipped XSD files from the specs."""
    target = resources.files("portal.flows.core").joinpath("xsd")
    for spec in all_specs():
        path = target.joinpath(spec.xsd_name)
        with resources.as_file(path) as file_path:
            file_path.write_text(render_xsd(spec), encoding="utf-8")
            sys.stdout.write(f"{file_path}\n")


if __name__ == "__main__":
    main()
