"""The convention's spellings of element names, accepted and brought to our canonical names.

The tables write `certification-identité`, `commune-résidence`, `Rome-v3`, `Bureau`,
`Date-dernier-ent`, `Periodicite`, `Departement`, `Nom`; our skeleton (the convention does not
publish one) uses the same names in lower case without accents. A vendor who follows the tables
word for word is not refused: accents and capitals are normalised before validation, and the
report names each spelling met with its canonical name (a warning).

Cost: nothing on a file written with the canonical names (the "clean" schema accepts its records
before any renaming is looked at); on a file written with the tables' spellings, the spellings
met once are renamed in C (`iter(*tags)`) on every record before it is validated.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from functools import cache

from lxml import etree

from portal.flows.core.registry import all_specs
from portal.flows.core.spec import GroupSpec

_MAX_REMEMBERED = 1000  # names that are not ours, remembered so as not to normalise them again


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
        self.tags: tuple[str, ...] = ()  # the spellings met, for lxml's C-level filter
        self.counts: Counter[str] = Counter()
        self.first_lines: dict[str, int | None] = {}
        self._not_ours: set[str] = set()

    def rename_known(self, element: etree._Element) -> None:
        """Rename, below `element`, the spellings already met in the file."""
        known, counts = self.known, self.counts
        for node in element.iter(*self.tags):
            tag = str(node.tag)
            counts[tag] += 1
            node.tag = known[tag]

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
                if target == tag or target not in self.names:
                    if len(self._not_ours) < _MAX_REMEMBERED:
                        self._not_ours.add(tag)  # reported as unexpected by the checks
                    continue
                self.known[tag] = target
                self.tags = (*self.tags, tag)
                self.first_lines[tag] = node.sourceline
            self.counts[tag] += 1
            node.tag = target
            renamed = True
        return renamed
