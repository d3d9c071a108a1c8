"""The shipped XSD files: in sync with the specs, loadable, accepting the valid samples."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
from lxml import etree

from portal.flows.core import FlowType
from portal.flows.core.registry import all_specs, get_spec, latest_spec, supported_versions
from portal.flows.core.xsd import render_xsd, xsd_bytes
from tests.flows.conftest import CORPUS, Sample


@pytest.mark.parametrize("spec", all_specs(), ids=lambda spec: spec.xsd_name)
def test_shipped_xsd_files_are_rendered_from_the_specs(spec: object) -> None:
    assert spec is not None
    shipped = xsd_bytes(spec).decode("utf-8")  # type: ignore[arg-type]

    assert shipped == render_xsd(spec), "run `python -m portal.flows.core.xsd` and commit"  # type: ignore[arg-type]


def test_one_xsd_per_flow_and_version_ships_in_the_package() -> None:
    names = sorted(p.name for p in resources.files("portal.flows.core").joinpath("xsd").iterdir())

    assert names == ["CGPEM_001_0.xsd", "PECDH_001_0.xsd", "PECGM_001_0.xsd"]


@pytest.mark.parametrize(
    ("flow", "example"),
    [
        (FlowType.CGPEM, "cgpem_exemple_convention.xml"),
        (FlowType.PECGM, "pecgm_valide.xml"),
        (FlowType.PECDH, "pecdh_valide.xml"),
    ],
)
def test_whole_files_validate_against_the_shipped_xsd(
    flow: FlowType, example: str, sample: Sample
) -> None:
    schema = etree.XMLSchema(etree.fromstring(xsd_bytes(latest_spec(flow))))

    assert schema.validate(etree.parse(str(CORPUS / example))), schema.error_log
    assert schema.validate(etree.fromstring(sample(flow, 30)[0])), schema.error_log


def test_the_xsd_rejects_what_the_convention_forbids(sample: Sample) -> None:
    schema = etree.XMLSchema(etree.fromstring(xsd_bytes(latest_spec(FlowType.CGPEM))))
    data, _ = sample(FlowType.CGPEM, 2, errors=["field.upper_ascii"])

    assert not schema.validate(etree.fromstring(data))


def test_versions_are_registered_per_flow() -> None:
    assert supported_versions(FlowType.CGPEM) == ("001,0",)
    assert get_spec(FlowType.CGPEM, "002,0") is None
    assert get_spec(FlowType.PECDH, "001,0") is latest_spec(FlowType.PECDH)


def test_every_rule_code_is_documented_for_technicians() -> None:
    from portal.flows.core import Rule

    documentation = (Path(__file__).parents[2] / "docs" / "flows.md").read_text(encoding="utf-8")

    assert [rule.value for rule in Rule if f"`{rule.value}`" not in documentation] == []
    # with its level and its source, as `filr flows rules` gives them
    rows = [f"| `{r.value}` | {r.severity.label} | {r.source} | " for r in Rule]
    assert [row for row in rows if row not in documentation] == []
