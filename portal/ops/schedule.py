"""The one schedule of every job: `filr jobs scheduler`, systemd timers and Kubernetes CronJobs.

Each job is one line of `SCHEDULE`: its name, the `filr` command it runs and when, in
Europe/Paris time (the conventions' working day). `filr jobs scheduler` reads it to run the
jobs itself; `filr jobs schedule --format systemd|kubernetes` writes the units of `deploy/`
from it, and a test checks that the committed files are what it writes, so they never drift.

Standard library only: `filr jobs schedule` starts without the application.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")
TIMEZONE_NAME = "Europe/Paris"

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SYSTEMD_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class ScheduleError(ValueError):
    """A schedule that the grammar does not know."""


@dataclass(frozen=True)
class When:
    """When a job runs: every N seconds, or at a wall-clock time on some days (Europe/Paris).

    Grammar: ``every N min`` (or ``every N s``, for the demo and the tests), ``hourly :MM``,
    ``daily HH:MM``, ``weekdays HH:MM`` (Monday to Friday), ``weekly mon HH:MM``,
    ``monthly D HH:MM`` (D from 1 to 28, so that every month has it).
    """

    text: str
    every_seconds: int | None = None
    minute: int = 0
    hour: int | None = None  # None: every hour (``hourly``)
    weekdays: tuple[int, ...] | None = None  # 0 = Monday; None: every day
    monthday: int | None = None

    @classmethod
    def parse(cls, text: str) -> When:
        """Parse *text* or raise `ScheduleError`."""
        words = text.split()
        try:
            if words[0] == "every" and len(words) == 3:
                n = int(words[1])
                unit = {"s": 1, "sec": 1, "min": 60}[words[2]]
                if n < 1 or (unit == 60 and 60 % n and n % 60):
                    raise ScheduleError(f"intervalle invalide : {text!r}")
                return cls(text, every_seconds=n * unit)
            if words[0] == "hourly" and len(words) == 2 and words[1].startswith(":"):
                return cls(text, minute=_bounded(words[1][1:], 59))
            hour, minute = _clock(words[-1])
            if words[0] == "daily" and len(words) == 2:
                return cls(text, hour=hour, minute=minute)
            if words[0] == "weekdays" and len(words) == 2:
                return cls(text, hour=hour, minute=minute, weekdays=(0, 1, 2, 3, 4))
            if words[0] == "weekly" and len(words) == 3 and words[1] in _DAYS:
                return cls(text, hour=hour, minute=minute, weekdays=(_DAYS.index(words[1]),))
            if words[0] == "monthly" and len(words) == 3:
                day = _bounded(words[1], 28, minimum=1)
                return cls(text, hour=hour, minute=minute, monthday=day)
        except (IndexError, KeyError, ValueError) as e:
            raise ScheduleError(f"horaire invalide : {text!r}") from e
        raise ScheduleError(f"horaire invalide : {text!r}")

    def next_after(self, moment: datetime) -> datetime:
        """The first run strictly after *moment* (aware), as an aware UTC datetime.

        Wall-clock times are Europe/Paris: a time skipped by the spring change (02:30 on the
        last Sunday of March) runs an hour later, at the same instant as 03:30; a time that
        happens twice in autumn runs once, at its first occurrence.
        """
        moment = moment.astimezone(UTC)
        if self.every_seconds is not None:
            # Aligned on the epoch (every 5 min: :00, :05…), the same on every server.
            step = self.every_seconds
            seconds = int(moment.timestamp()) // step * step + step
            return datetime.fromtimestamp(seconds, UTC)
        local_day = moment.astimezone(PARIS).date() - timedelta(days=1)
        for offset in range(0, 40 * 24 if self.hour is None else 40):
            if self.hour is None:
                day = local_day + timedelta(days=offset // 24)
                candidate = self._at(day, offset % 24)
            else:
                day = local_day + timedelta(days=offset)
                if not self._runs_on(day):
                    continue
                candidate = self._at(day, self.hour)
            if candidate > moment:
                return candidate
        raise AssertionError(f"no run of {self.text!r} in 40 days")  # pragma: no cover

    def _runs_on(self, day: date) -> bool:
        if self.weekdays is not None and day.weekday() not in self.weekdays:
            return False
        return self.monthday is None or day.day == self.monthday

    def _at(self, day: date, hour: int) -> datetime:
        # fold=0: the first of two instants in autumn; for a skipped time in spring, zoneinfo
        # gives the offset before the change, i.e. the instant one hour after the skipped one.
        local = datetime.combine(day, time(hour, self.minute), PARIS)
        return local.astimezone(UTC)

    def systemd(self) -> str:
        """The `OnCalendar=` value (systemd ≥ 235 reads the time zone at the end)."""
        if self.every_seconds is not None:
            if self.every_seconds % 60:
                return f"*:*:0/{self.every_seconds}"
            minutes = self.every_seconds // 60
            return "*:*:00" if minutes == 1 else f"*:0/{minutes}:00"
        if self.hour is None:
            return f"*:{self.minute:02d}:00"
        days = ""
        if self.weekdays is not None:
            names = [_SYSTEMD_DAYS[d] for d in self.weekdays]
            days = "Mon..Fri " if self.weekdays == (0, 1, 2, 3, 4) else ",".join(names) + " "
        monthday = f"{self.monthday:02d}" if self.monthday is not None else "*"
        return f"{days}*-*-{monthday} {self.hour:02d}:{self.minute:02d}:00 {TIMEZONE_NAME}"

    def cron(self) -> str:
        """The five cron fields (a Kubernetes CronJob, with `timeZone: Europe/Paris`)."""
        if self.every_seconds is not None:
            if self.every_seconds % 60:
                raise ScheduleError(f"cron ne connaît pas les secondes : {self.text!r}")
            minutes = self.every_seconds // 60
            return "* * * * *" if minutes == 1 else f"*/{minutes} * * * *"
        hour = "*" if self.hour is None else str(self.hour)
        monthday = "*" if self.monthday is None else str(self.monthday)
        weekdays = "*"
        if self.weekdays is not None:
            cron_days = [str((d + 1) % 7) for d in self.weekdays]  # cron: 0 = Sunday
            weekdays = "1-5" if self.weekdays == (0, 1, 2, 3, 4) else ",".join(cron_days)
        return f"{self.minute} {hour} {monthday} * {weekdays}"


def _clock(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", text)
    if match is None:
        raise ValueError(text)
    return _bounded(match.group(1), 23), _bounded(match.group(2), 59)


def _bounded(text: str, maximum: int, *, minimum: int = 0) -> int:
    value = int(text)
    if not minimum <= value <= maximum:
        raise ValueError(text)
    return value


@dataclass(frozen=True)
class Entry:
    """One scheduled job: its name, the `filr` arguments it runs, and when."""

    name: str
    command: tuple[str, ...]
    when: When
    # A failed run is tried again after each of these delays (seconds), while the next
    # scheduled run is further away; a job that runs every minute needs none.
    retry_delays: tuple[int, ...] = (60, 300, 900)

    @property
    def command_line(self) -> str:
        """The command as an operator types it."""
        return " ".join(("filr", *self.command))


def entry(name: str, command: str, when: str, *, retries: bool = True) -> Entry:
    """One line of the table."""
    return Entry(name, tuple(command.split()), When.parse(when), (60, 300, 900) if retries else ())


# Times avoid 02:00-03:00 (skipped in March, doubled in October) and keep the nightly work
# apart. `audit-head` runs after midnight UTC all year (03:15 Paris is 01:15 or 02:15 UTC).
SCHEDULE: tuple[Entry, ...] = (
    entry("alerts", "jobs alerts", "every 1 min", retries=False),
    entry("sessions", "jobs sessions", "every 15 min", retries=False),
    entry("purge", "jobs purge", "hourly :07"),
    entry("audit-head", "jobs audit-head", "daily 03:15"),
    entry("audit-verify", "audit verify", "daily 04:00"),
    entry("audit-retention", "jobs audit-retention", "monthly 1 04:30"),
    entry("digest", "jobs digest", "daily 07:30"),
    entry("reminders", "jobs reminders", "daily 08:00"),
    entry("flow-reminders", "jobs flow-reminders", "weekdays 08:30"),
    entry("fiches-rappels", "jobs fiches-rappels", "daily 08:15"),
    entry("habilitations", "jobs habilitations", "daily 06:00"),
    entry("inactive-accounts", "jobs inactive-accounts", "daily 06:05"),
    entry("review", "jobs review", "daily 06:10"),
    entry("incidents", "jobs incidents", "hourly :20"),
    entry("antivirus", "jobs antivirus", "every 1 min"),
    entry("antivirus-signatures", "jobs antivirus-signatures", "hourly :40"),
    entry("backup", "backup run", "daily 01:30"),
    entry("backup-drill", "backup drill", "weekly sun 04:30"),
)


def find_entry(name: str, table: tuple[Entry, ...] = SCHEDULE) -> Entry:
    """The entry named *name*, or `KeyError`."""
    for item in table:
        if item.name == name:
            return item
    raise KeyError(name)


# --- Files for other schedulers -----------------------------------------------------------

GENERATED = "Généré par `filr jobs schedule` depuis portal/ops/schedule.py : ne pas modifier."
FILR_BIN = "/usr/local/bin/filr"
ENV_FILE = "/etc/filr/filr.env"
IMAGE = "registry.example.org/filr:latest"


def systemd_units(table: tuple[Entry, ...] = SCHEDULE) -> dict[str, str]:
    """File name → content of a `filr-<job>.service` and `filr-<job>.timer` per job."""
    files: dict[str, str] = {}
    for item in table:
        files[f"filr-{item.name}.service"] = (
            f"# {GENERATED}\n"
            "[Unit]\n"
            f"Description=Fil'R : {item.command_line}\n"
            "After=network-online.target\n"
            "Wants=network-online.target\n\n"
            "[Service]\n"
            "Type=oneshot\n"
            "User=filr\n"
            "Group=filr\n"
            f"EnvironmentFile={ENV_FILE}\n"
            f"ExecStart={FILR_BIN} {' '.join(item.command)}\n"
            "NoNewPrivileges=yes\n"
            "PrivateTmp=yes\n"
            "ProtectSystem=strict\n"
            "ProtectHome=yes\n"
        )
        files[f"filr-{item.name}.timer"] = (
            f"# {GENERATED}\n"
            "[Unit]\n"
            f"Description=Fil'R : {item.name} ({item.when.text}, {TIMEZONE_NAME})\n\n"
            "[Timer]\n"
            f"OnCalendar={item.when.systemd()}\n"
            # A run missed while the machine was off runs at boot; the job lock and the jobs'
            # idempotence make a late or doubled run harmless.
            "Persistent=true\n"
            "AccuracySec=1s\n\n"
            "[Install]\n"
            "WantedBy=timers.target\n"
        )
    return files


def kubernetes_cronjobs(table: tuple[Entry, ...] = SCHEDULE) -> str:
    """One YAML stream of `batch/v1` CronJobs (Kubernetes ≥ 1.27 for `timeZone`)."""
    docs = []
    for item in table:
        args = "".join(f"\n                - {_yaml_str(a)}" for a in item.command)
        docs.append(
            "apiVersion: batch/v1\n"
            "kind: CronJob\n"
            "metadata:\n"
            f"  name: filr-{item.name}\n"
            "  labels:\n"
            "    app.kubernetes.io/name: filr\n"
            f"    app.kubernetes.io/component: job-{item.name}\n"
            "spec:\n"
            f"  schedule: {_yaml_str(item.when.cron())}\n"
            f"  timeZone: {TIMEZONE_NAME}\n"
            # Never two runs of one job at once (the job lock also guards across servers).
            "  concurrencyPolicy: Forbid\n"
            "  startingDeadlineSeconds: 300\n"
            "  successfulJobsHistoryLimit: 1\n"
            "  failedJobsHistoryLimit: 3\n"
            "  jobTemplate:\n"
            "    spec:\n"
            f"      backoffLimit: {len(item.retry_delays)}\n"
            "      template:\n"
            "        spec:\n"
            "          restartPolicy: Never\n"
            "          containers:\n"
            "            - name: filr\n"
            f"              image: {IMAGE}\n"
            "              command:\n"
            "                - filr\n"
            f"              args:{args}\n"
            "              envFrom:\n"
            "                - secretRef:\n"
            "                    name: filr-env\n"
        )
    return f"# {GENERATED}\n" + "---\n".join(docs)


def _yaml_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def table_text(table: tuple[Entry, ...] = SCHEDULE, now: datetime | None = None) -> str:
    """The schedule as operators read it, with each job's next run in Paris time."""
    now = now or datetime.now(UTC)
    rows = [("tâche", "commande", "quand (Europe/Paris)", "prochaine exécution")]
    for item in table:
        upcoming = item.when.next_after(now).astimezone(PARIS)
        rows.append((item.name, item.command_line, item.when.text, f"{upcoming:%Y-%m-%d %H:%M}"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
