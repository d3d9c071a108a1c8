"""Audit action names: the member says what the trail stores."""

from __future__ import annotations

import re

import pytest

from audit import AuditAction

# "subject:verb" or "subject:object:verb", lower-case words joined by hyphens.
_VALUE_SHAPE = re.compile(r"[a-z]+(?:-[a-z]+)*(?::[a-z]+(?:-[a-z]+)*){1,2}")


@pytest.mark.parametrize("action", list(AuditAction), ids=lambda a: a.name)
def test_member_name_is_its_stored_value_in_upper_snake_case(action: AuditAction) -> None:
    # Given an action as stored in the trail, such as "deposit:downloaded"
    assert _VALUE_SHAPE.fullmatch(action.value), action.value
    # Then its member reads the same, DEPOSIT_DOWNLOADED, so that a reader of the code and a
    # reader of an export speak of one event with one name
    assert action.name == action.value.upper().replace(":", "_").replace("-", "_")
