"""The Python walk of one element against its spec: precise French messages, XSD reconciled.

Used for the records the XSD refuses (and for the header and footer): it says in French what is
wrong where, and tells which XSD errors its findings explain (the others are still reported).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from lxml import etree

from portal.flows.core.encoding import EncodingFinding
from portal.flows.core.rules import Rule
from portal.flows.core.spec import FieldSpec, GroupSpec, check_field

XSI: Final = "{http://www.w3.org/2001/XMLSchema-instance}"
XML_SPACE: Final = " \t\r\n"
PATH_INDEX: Final = re.compile(r"\[[0-9]+\]")


@dataclass(frozen=True, slots=True)
class Found:
    """An issue found by the Python walk of one element, before it gets its record number."""

    rule: Rule
    message: str
    line: int | None
    field: str
    value: str | None = None
    is_nir: bool = False

    @property
    def is_structural(self) -> bool:
        return self.rule.value.startswith("structure.")


def is_blank(text: str | None) -> bool:
    return text is None or text.strip(XML_SPACE) == ""


def groups_to_walk(errors: list[etree._LogEntry], spec: GroupSpec) -> set[str] | None:
    """The record's groups that the XSD errors point at; None when the record itself is at
    fault (its own content, a group missing, misplaced or repeated): then walk it all."""
    groups: set[str] = set()
    for error in errors:
        parts = local_path(PATH_INDEX.sub("", error.path or "").strip("/")).split("/")
        if error.type_name == "SCHEMAV_ELEMENT_CONTENT":
            parts = parts[:-1]  # about the content of the parent
        if len(parts) < 2 or spec.position(parts[1]) is None:
            return None
        groups.add(parts[1])
    return groups


def name_of(element: etree._Element) -> str:
    """The element's name as written in the file: prefix:local, or {namespace}local when it
    is in a default namespace (the flows use none)."""
    tag = str(element.tag)
    if tag.startswith("{"):
        local = tag.rpartition("}")[2]
        return f"{element.prefix}:{local}" if element.prefix else tag
    return tag


def local_path(path: str) -> str:
    """`a/{ns}b/p:c[2]` -> `a/b/c`: XSD error paths and ours compared on local names."""
    parts = (part.rpartition("}")[2].rpartition(":")[2] for part in path.split("/"))
    return "/".join(PATH_INDEX.sub("", part) for part in parts)


def explains(item: Found, xsd_path: str) -> bool:
    """Whether a Python finding accounts for an XSD error at `xsd_path`."""
    path = local_path(item.field)
    xsd_path = local_path(xsd_path)
    if path == xsd_path or path.startswith(xsd_path + "/") or xsd_path.startswith(path + "/"):
        return True
    return item.is_structural and path.rpartition("/")[0] == xsd_path.rpartition("/")[0]


def locate(element: etree._Element, relative_path: str) -> int | None:
    """Line of the deepest existing element along `relative_path` below `element`."""
    line = element.sourceline
    node = element
    for part in relative_path.split("/"):
        child = node.find(part)
        if child is None:
            break
        node, line = child, child.sourceline
    return line


def path_of(node: etree._Element, top: etree._Element) -> str:
    parts: list[str] = []
    current: etree._Element | None = node
    while current is not None:
        parts.append(name_of(current))
        if current is top:
            break
        current = current.getparent()
    return "/".join(reversed(parts))


def field_at(element: etree._Element, finding: EncodingFinding) -> str:
    """Path of the field of `element` whose text holds the finding, as well as it can be told."""
    exact: etree._Element | None = None
    containing: etree._Element | None = None
    last_leaf: etree._Element | None = None
    for node in element.iter():
        line = node.sourceline or 0
        if line > finding.line:
            break
        if finding.text and finding.text in (node.text or ""):
            containing = node
            if line == finding.line and exact is None:
                exact = node
        if len(node) == 0:
            last_leaf = node
    for candidate in (exact, containing, last_leaf):
        if candidate is not None:
            return path_of(candidate, element)
    return path_of(element, element)


def walk(
    element: etree._Element,
    spec: GroupSpec,
    path: str,
    key: str,
    found: list[Found],
    values: dict[str, dict[str, str | None]],
) -> None:
    """Check `element` against `spec`: attributes, text, order, presence, every field."""
    attributes(element, path, found)
    if not is_blank(element.text):
        found.append(
            Found(
                Rule.STRUCTURE_UNEXPECTED_TEXT,
                f"Du texte figure directement dans <{spec.name}>, hors de tout champ.",
                element.sourceline,
                path,
            )
        )
    fields: dict[str, str | None] = {}
    values[key] = fields
    seen: set[str] = set()
    furthest, furthest_name = -1, ""
    for child in element:
        if not is_blank(child.tail):
            found.append(
                Found(
                    Rule.STRUCTURE_UNEXPECTED_TEXT,
                    f"Du texte figure directement dans <{spec.name}>, hors de tout champ.",
                    child.sourceline,
                    path,
                )
            )
        if not isinstance(child.tag, str):
            continue
        tag = name_of(child)
        child_path = f"{path}/{tag}"
        position = spec.position(tag)
        if position is None:
            found.append(
                Found(
                    Rule.STRUCTURE_UNEXPECTED_ELEMENT,
                    f"L'élément <{tag}> n'est pas prévu dans <{spec.name}> (éléments prévus : "
                    f"{', '.join(c.name for c in spec.children)}).",
                    child.sourceline,
                    child_path,
                )
            )
            continue
        if tag in seen:
            found.append(
                Found(
                    Rule.STRUCTURE_DUPLICATE_ELEMENT,
                    f"L'élément <{tag}> apparaît plusieurs fois dans <{spec.name}>.",
                    child.sourceline,
                    child_path,
                )
            )
            continue
        seen.add(tag)
        if position < furthest:
            found.append(
                Found(
                    Rule.STRUCTURE_ORDER,
                    f"L'élément <{tag}> est mal placé : il doit précéder <{furthest_name}> "
                    f"(ordre attendu : {', '.join(c.name for c in spec.children)}).",
                    child.sourceline,
                    child_path,
                )
            )
        else:
            furthest, furthest_name = position, tag
        child_spec = spec.children[position]
        if isinstance(child_spec, GroupSpec):
            walk(child, child_spec, child_path, f"{key}/{tag}" if key else tag, found, values)
        else:
            check_leaf(child, child_spec, child_path, found, fields)
    for child_spec in spec.children:
        if child_spec.required and child_spec.name not in seen:
            kind = "Le groupe" if isinstance(child_spec, GroupSpec) else "Le champ"
            found.append(
                Found(
                    Rule.STRUCTURE_MISSING_ELEMENT,
                    f"{kind} obligatoire <{child_spec.name}> manque dans <{spec.name}>.",
                    element.sourceline,
                    f"{path}/{child_spec.name}",
                )
            )


def check_leaf(
    element: etree._Element,
    spec: FieldSpec,
    path: str,
    found: list[Found],
    fields: dict[str, str | None],
) -> None:
    attributes(element, path, found)
    if len(element):
        found.append(
            Found(
                Rule.STRUCTURE_UNEXPECTED_ELEMENT,
                f"Le champ <{spec.name}> ne doit contenir que du texte, pas d'élément.",
                element.sourceline,
                path,
            )
        )
        fields[spec.name] = None
        return
    text = element.text
    fields[spec.name] = text
    problem = check_field(spec, text or "")
    if problem is not None:
        rule, message = problem
        found.append(Found(rule, message, element.sourceline, path, text, spec.is_nir))


def attributes(element: etree._Element, path: str, found: list[Found]) -> None:
    for name in element.attrib:
        if not str(name).startswith(XSI):
            found.append(
                Found(
                    Rule.STRUCTURE_UNEXPECTED_ATTRIBUTE,
                    f"L'élément <{name_of(element)}> ne doit pas porter d'attribut ({name!s}).",
                    element.sourceline,
                    path,
                )
            )
