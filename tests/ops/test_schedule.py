"""The schedule table: its grammar, Paris time across the clock changes, the generated files."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from portal.cli import main
from portal.ops.schedule import (
    PARIS,
    SCHEDULE,
    ScheduleError,
    When,
    kubernetes_cronjobs,
    systemd_units,
)
from tests.support.services import unavailable

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def paris(*args: int) -> datetime:
    return datetime(*args, tzinfo=PARIS)  # type: ignore[misc]


def test_a_daily_time_is_paris_time_in_winter_and_in_summer() -> None:
    daily = When.parse("daily 03:15")
    assert daily.next_after(paris(2026, 1, 10, 12, 0)) == datetime(2026, 1, 11, 2, 15, tzinfo=UTC)
    assert daily.next_after(paris(2026, 7, 10, 12, 0)) == datetime(2026, 7, 11, 1, 15, tzinfo=UTC)


def test_a_time_skipped_in_march_runs_once_an_hour_later_and_a_doubled_one_once() -> None:
    # 29 March 2026: 02:00 → 03:00; 25 October 2026: 03:00 → 02:00
    daily = When.parse("daily 02:30")
    spring = daily.next_after(paris(2026, 3, 28, 12, 0))
    assert spring.astimezone(PARIS).replace(tzinfo=None) == datetime(2026, 3, 29, 3, 30)
    autumn = daily.next_after(paris(2026, 10, 24, 12, 0))
    assert autumn == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # the first 02:30 (CEST)
    assert daily.next_after(autumn) == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)


def test_weekdays_weekly_monthly_and_intervals() -> None:
    saturday = paris(2026, 12, 5, 9, 0)
    assert When.parse("weekdays 08:30").next_after(saturday) == paris(2026, 12, 7, 8, 30)
    assert When.parse("weekly sun 05:00").next_after(saturday) == paris(2026, 12, 6, 5, 0)
    assert When.parse("monthly 1 04:30").next_after(saturday) == paris(2027, 1, 1, 4, 30)
    assert When.parse("hourly :07").next_after(saturday) == paris(2026, 12, 5, 9, 7)
    assert When.parse("every 15 min").next_after(paris(2026, 12, 5, 9, 7)) == paris(
        2026, 12, 5, 9, 15
    )
    assert When.parse("every 10 s").next_after(saturday).second == 10


@pytest.mark.parametrize(
    "text", ["daily 24:00", "weekly mo 03:00", "monthly 31 01:00", "every 7 min", "sometimes"]
)
def test_an_unknown_schedule_is_refused(text: str) -> None:
    with pytest.raises(ScheduleError):
        When.parse(text)


def test_every_job_of_the_schedule_names_a_filr_command_that_exists() -> None:
    runner = CliRunner()
    for entry in SCHEDULE:
        result = runner.invoke(main, [*entry.command, "--help"])
        assert result.exit_code == 0, (entry.name, result.output)
    assert len({e.name for e in SCHEDULE}) == len(SCHEDULE)


def test_the_committed_systemd_units_and_cronjobs_are_the_generated_ones() -> None:
    # Given the files of deploy/ (regenerate: filr jobs schedule --format systemd --output …)
    units = systemd_units()
    committed = {p.name: p.read_text(encoding="utf-8") for p in (DEPLOY / "systemd").iterdir()}
    # Then they are exactly what the schedule table gives, no more, no less
    assert committed == units
    assert (DEPLOY / "kubernetes" / "cronjobs.yaml").read_text(
        encoding="utf-8"
    ) == kubernetes_cronjobs()


def test_systemd_reads_each_timer_as_the_scheduler_does() -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        unavailable("systemd-analyze (Debian package systemd)")
    assert analyze is not None
    for entry in SCHEDULE:
        done = subprocess.run(
            [analyze, "calendar", "--iterations=3", entry.when.systemd()],
            capture_output=True,
            text=True,
            check=True,
            env={"TZ": "UTC", "LANG": "C"},
        )
        found = re.findall(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", done.stdout)
        elapses = [datetime.fromisoformat(f).replace(tzinfo=UTC) for f in found]
        assert len(elapses) == 3, done.stdout
        # systemd's first elapse is the scheduler's next run after the second before, and so on
        ours = [entry.when.next_after(elapses[0] - timedelta(seconds=1))]
        while len(ours) < 3:
            ours.append(entry.when.next_after(ours[-1]))
        assert ours == elapses, entry.name
