"""The convention's spellings of element names, accepted and brought to our canonical names.

The tables write `certification-identité`, `commune-résidence`, `Rome-v3`, `Bureau`,
`Date-dernier-ent`, `Periodicite`, `Departement`, `Nom`; our skeleton (the convention does not
publish one) uses the same names in lower case without accents. A vendor who follows the tables
word for word is not refused: accents and capitals are normalised before validation, and the
report names each spelling met with its canonical name (a warning).

Cost: nothing on a file written with the canonical names (the "clean" schema accepts its records
before any renaming is looked at). On a file written with the tables' spellings, the spellings
met in the first records are renamed element by element, and a second clean schema is compiled
with the elements named as the file spells them, so that the following records pass in C too
(`xsd.spelled_clean_record_schema`); only a record that neither clean schema accepts is renamed
in Python before its checks.
"""

from __future__ import annotations

import unicodedata
from functools import cache

from lxml import etree

from portal.flows.core.registry import all_specs
from portal.flows.core.spec import GroupSpec

_MAX_REMEMBERED = 1000  # spellings learnt, and names not ours remembered (not normalised again)


def canonical_spelling(name: str) -> str:
    """`certification-identité` -> `certification-identite`, `Rome-v3` -> `rome-v3`."""
    decomposed = unicodedata.normalize("NFKD", name)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def _names(group: GroupSpec) -> set[str]:
    names = {group.name}
    for child in group.children:
        names |= _names(child) if isinstance(child, GroupSpec) else {child.name}
    return names


@cache
def known_names() -> frozenset[str]:
    """Every element name of every registered structure."""
    names: set[str] = set()
    for spec in all_specs():
        names |= _names(spec.entete) | _names(spec.dossier) | _names(spec.fin)
    return frozenset(names)


class Spellings:
    """The spellings met in one file, and how often."""

    def __init__(self) -> None:
        self.names = known_names()
        self.known: dict[str, str] = {}  # spelling met -> canonical name
        self.spelled: dict[str, str] = {}  # canonical name -> the first spelling met of it
        self.version = 0  # changes whenever `spelled` does (at most once per name of ours)
        self.records = 0  # records written with a spelling of the tables
        self.first_lines: dict[str, int | None] = {}
        self._not_ours: set[str] = set()

    def rename_new(self, element: etree._Element) -> bool:
        """Look at every name below `element`; rename the convention's spellings of ours.

        True when something was renamed (the caller validates the element again).
        """
        renamed = False
        for node in element.iter():
            tag = node.tag
            if not isinstance(tag, str) or tag in self.names or tag in self._not_ours:
                continue
            target = self.known.get(tag)
            if target is None:
                target = canonical_spelling(tag)
                # Past a thousand spellings a file is not a vendor's copy of the tables (and
                # memory stays bounded): the others are reported as unexpected elements.
                if target == tag or target not in self.names or len(self.known) >= _MAX_REMEMBERED:
                    if len(self._not_ours) < _MAX_REMEMBERED:
                        self._not_ours.add(tag)  # reported as unexpected by the checks
                    continue
                self.known[tag] = target
                self.first_lines[tag] = node.sourceline
                if target not in self.spelled:
                    self.spelled[target] = tag
                    self.version += 1
            node.tag = target
            renamed = True
        return renamed
