"""Versioned registry of flow structures: one spec per (flow type, version)."""

from __future__ import annotations

from typing import Final

from portal.flows.core.spec import FlowSpec
from portal.flows.core.types import FlowType
from portal.flows.core.versions import v001_0

# A new structure of the convention is added here beside the old one, e.g. v002_0.SPECS.
_SPECS: Final[dict[tuple[FlowType, str], FlowSpec]] = {
    (spec.flow_type, spec.version): spec for spec in (*v001_0.SPECS,)
}


def get_spec(flow_type: FlowType, version: str) -> FlowSpec | None:
    """The structure of `flow_type` in `version`, or None when that version is not supported."""
    return _SPECS.get((flow_type, version))


def latest_spec(flow_type: FlowType) -> FlowSpec:
    """The most recent supported structure of `flow_type`."""
    return max(
        (spec for (kind, _), spec in _SPECS.items() if kind is flow_type),
        key=lambda spec: spec.version,
    )


def supported_versions(flow_type: FlowType) -> tuple[str, ...]:
    """The versions of `flow_type` that the validator knows, oldest first."""
    return tuple(sorted(version for kind, version in _SPECS if kind is flow_type))


def all_specs() -> tuple[FlowSpec, ...]:
    """Every registered structure."""
    return tuple(_SPECS.values())
