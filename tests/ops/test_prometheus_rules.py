"""The Prometheus rules of deploy/prometheus, checked and unit-tested by the real `promtool`."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from portal.ops.metrics import LATENCY_BUCKETS
from tests.support.services import unavailable

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        unavailable("promtool (Debian package prometheus)")
    assert found is not None
    return found


def test_promtool_checks_the_rules() -> None:
    done = subprocess.run(
        [_promtool(), "check", "rules", "filr-rules.yml"],
        cwd=RULES, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_promtool_unit_tests_of_the_service_levels_pass() -> None:
    done = subprocess.run(
        [_promtool(), "test", "rules", "filr-rules.test.yml"],
        cwd=RULES, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_rules_use_metrics_and_buckets_the_portal_exposes() -> None:
    # The "90 % under 1 s" rules read the le="1.0" bucket: the histogram must have it
    assert 1.0 in LATENCY_BUCKETS
    text = (RULES / "filr-rules.yml").read_text(encoding="utf-8")
    used = set(re.findall(r"\b(filr_[a-z_]+)", text))
    exposed = {
        "filr_http_request_duration_seconds_bucket",
        "filr_http_request_duration_seconds_count",
        "filr_job_consecutive_failures",
        "filr_backup_age_seconds",
        "filr_audit_chain_valid",
        "filr_audit_chain_checked_timestamp_seconds",
        "filr_metrics_database_reachable",
    }
    assert used <= exposed, used - exposed
