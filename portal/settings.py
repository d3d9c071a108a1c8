"""Typed, frozen settings read once from the environment."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from portal.filecheck.clamd import parse_url

ENV_PREFIX = "FILR_"
AUDIT_RETENTION_MIN, AUDIT_RETENTION_MAX = 6, 36
MFA_FAILURES_MIN, MFA_FAILURES_MAX = 3, 100
METRICS_TOKEN_MIN = 32
# One convention asks for two months without use, another nine: 30 days to a year.
ACCOUNT_INACTIVE_MIN, ACCOUNT_INACTIVE_MAX = 30, 365
# A backup holds the wrapped keys of its night: kept no longer than a deposit lives (90 days)
# plus the restore window (the conventions' 8 working hours, counted as one day).
BACKUP_RETENTION_MIN, BACKUP_RETENTION_MAX = 1, 91


class SettingsError(ValueError):
    """A setting is missing or malformed."""


def _env(name: str, default: str | None = None) -> str | None:
    """Read FILR_<name>, or the content of the file named by FILR_<name>_FILE."""
    value = os.environ.get(ENV_PREFIX + name)
    if value is not None:
        return value
    path = os.environ.get(ENV_PREFIX + name + "_FILE")
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise SettingsError(f"cannot read {ENV_PREFIX}{name}_FILE: {e.strerror}") from e
    return default


def _bool(name: str, default: bool) -> bool:
    raw = _env(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{ENV_PREFIX}{name} must be a boolean, not {raw!r}")


def _int(name: str, default: int, *, minimum: int = 0) -> int:
    raw = _env(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as e:
        raise SettingsError(f"{ENV_PREFIX}{name} must be an integer, not {raw!r}") from e
    if value < minimum:
        raise SettingsError(f"{ENV_PREFIX}{name} must be >= {minimum}")
    return value


# The roles of portal.accounts.models.Role, spelled out so that settings import nothing.
KNOWN_ROLES = frozenset({"agent", "technicien", "gestionnaire", "securite", "admin"})


def _roles(name: str) -> frozenset[str]:
    raw = _env(name) or ""
    roles = frozenset(r.strip() for r in raw.split(",") if r.strip())
    unknown = roles - KNOWN_ROLES
    if unknown:
        raise SettingsError(f"{ENV_PREFIX}{name}: unknown roles {sorted(unknown)}")
    return roles


def _date(name: str) -> date | None:
    raw = _env(name)
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError as e:
        raise SettingsError(f"{ENV_PREFIX}{name} must be a date (AAAA-MM-JJ), not {raw!r}") from e


def _load_or_create_secret(path: Path) -> str:
    """Return the secret stored in *path*, creating it (0600) on first start."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="ascii").strip()
    with os.fdopen(fd, "w", encoding="ascii") as f:
        value = secrets.token_urlsafe(48)
        f.write(value + "\n")
    return value


def month_day(value: str) -> tuple[int, int] | None:
    """(month, day) of "MM-JJ", or None when it is not a day of every year (29 February)."""
    month, _, day = value.partition("-")
    if not (month.isdigit() and day.isdigit() and len(month) == len(day) == 2):
        return None
    try:
        date(2027, int(month), int(day))  # a year without 29 February
    except ValueError:
        return None
    return int(month), int(day)


def parse_clamd_url(url: str) -> None:
    """Refuse a FILR_CLAMD_URL that is neither unix:///path nor tcp://host:port."""
    try:
        parse_url(url)
    except ValueError as e:
        raise SettingsError(f"{ENV_PREFIX}CLAMD_URL: {e}") from None


@dataclass(frozen=True)
class Settings:
    """Everything the portal needs to run; built by `from_env` and never mutated."""

    secret_key: str
    database_url: str
    data_dir: Path
    storage_url: str
    master_key_file: Path
    base_url: str = "http://127.0.0.1:8000"
    redis_url: str | None = None
    secure_cookies: bool = True
    session_idle_minutes: int = 15
    session_absolute_hours: int = 12
    trusted_proxy_count: int = 0
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    mail_from: str = "Fil'R <ne-pas-repondre@filr.localhost>"
    mail_dir: Path | None = None
    dsfr_dir: Path | None = None
    tus_client_dir: Path | None = None  # tus-js-client's dist/ (npm), for resumable uploads
    throttle_account_per_minute: int = 5
    throttle_ip_per_minute: int = 20
    api_requests_per_minute: int = 300
    throttle_max_delay_seconds: int = 900
    # Second-factor failures after which the account's log-ins are refused until a password
    # reset by e-mail or an MFA reset (portal.auth.services.mfa_failures_capped).
    mfa_failures_max: int = 10
    # WebAuthn security keys (portal.auth.keys): offered to everyone unless disabled; the roles
    # that must hold one, and the day from which those roles without a key are refused.
    webauthn_enabled: bool = True
    webauthn_required_roles: frozenset[str] = frozenset()
    webauthn_enrol_deadline: date | None = None
    # ProConnect (portal.auth.proconnect): on when the issuer, client id and secret are set;
    # the discovery document defaults to <issuer>/.well-known/openid-configuration.
    proconnect_issuer: str | None = None
    proconnect_discovery_url: str | None = None
    proconnect_client_id: str | None = None
    proconnect_client_secret: str | None = field(default=None, repr=False)
    proconnect_scopes: str = "openid email given_name usual_name uid"
    proconnect_acr_values: str | None = None
    proconnect_timeout_seconds: int = 10
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    max_upload_bytes: int = 2 * 1024**3
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    weekly_flow_lifetime_days: int = 7
    monthly_flow_lifetime_days: int = 35
    # Life (default and maximum) of a weekly experimentation file, category
    # hebdo_experimentation: "un délai d'expiration court".
    weekly_file_lifetime_days: int = 7
    # Sanity of a flow against its previous period: relative drop and jump (percent) flagged.
    flow_sanity_drop_percent: int = 50
    flow_sanity_jump_percent: int = 100
    # Working days before the CGPEM deadline when the département's technicians are reminded.
    flow_reminder_working_days: int = 3
    alert_login_failures_account: int = 5
    alert_login_failures_ip: int = 20
    alert_login_window_minutes: int = 15
    alert_downloads_max: int = 50
    alert_downloads_window_minutes: int = 60
    alert_chain_verify_minutes: int = 60
    # Requests for ids that exist nowhere (deposits, flows) by one account: an enumeration.
    alert_unknown_ids: int = 20
    alert_unknown_ids_window_minutes: int = 10
    # Audit trail (docs/audit.md): retention in months (the CNIL's logging recommendation
    # allows 6 to 36), the owner's URL for migrations and the purge, the app's PostgreSQL role.
    audit_retention_months: int = 12
    # Days without a log-in after which `filr jobs inactive-accounts` suspends an account
    # (a notice goes 7 days before).
    account_inactive_days: int = 60
    # The annual review of habilitations (MM-JJ, French calendar days, both included).
    review_opens: str = "03-01"
    review_closes: str = "04-30"
    # Incident register: the conventions' delay for telling the partners (36 h; 48 h in another
    # one), and how long before each deadline the security officers are reminded.
    incident_partner_notice_hours: int = 36
    incident_reminder_hours: int = 12
    database_owner_url: str | None = None
    database_app_role: str | None = None
    # Only read by `filr db upgrade --app-role` when it creates the role (docs/operations.md).
    database_app_password: str | None = field(default=None, repr=False)
    # A PostgreSQL superuser may rewrite the audit trail: the portal refuses to connect as one
    # unless this is set (logged as a warning). SQLite, the embedded default, has no roles.
    allow_superuser: bool = False
    # Bearer token of `/metrics` (docs/operations.md); unset, the endpoint answers 404.
    metrics_token: str | None = field(default=None, repr=False)
    # The antivirus (docs/operations.md): clamd's socket, how long a scan may take, the age of
    # its signatures past which an alert is raised, and the explicit bypass (audited per file)
    # that lets files through unscanned while clamd is unavailable. Off: they wait.
    clamd_url: str = "unix:///run/clamav/clamd.ctl"
    clamd_timeout_seconds: int = 120
    antivirus_max_signature_age_hours: int = 48
    antivirus_bypass: bool = False
    # Uploads declaring more bytes than this are scanned right after they are stored (by
    # `filr jobs antivirus`, before publication) rather than while they stream: clamd scans
    # only once the stream has ended, at 40-50 MiB/s on one core, which would halve the upload
    # rate of big files (benchmarks/storage_throughput.py).
    antivirus_inline_max_bytes: int = 32 * 1024**2
    # A pending file on which clamd failed this many times (up but no verdict: a timeout, an
    # ERROR reply) raises one alert; it stays pending and is still tried at each run.
    antivirus_max_scan_attempts: int = 10
    # Resumable uploads (tus 1.0.0, docs/storage.md): off by default; every PATCH but the last
    # carries a multiple of the encryption segment size, at least 5 MiB (the smallest S3 part),
    # at most `resumable_max_chunk_bytes` (held in memory while it is encrypted).
    resumable_uploads: bool = False
    resumable_max_chunk_bytes: int = 64 * 1024**2
    resumable_expiry_hours: int = 24
    # Backups (docs/operations.md): the backup site (s3://bucket/prefix with its own endpoint
    # and credentials, or file:///dir), the backup key (never the master key), retention.
    backup_url: str | None = None
    backup_s3_endpoint_url: str | None = None
    backup_s3_region: str | None = None
    backup_s3_access_key: str | None = None
    backup_s3_secret_key: str | None = field(default=None, repr=False)
    backup_key_file: Path | None = None
    backup_retention_days: int = 35
    # Where the restore drill restores the object store (default: a directory under data_dir).
    backup_drill_storage_url: str | None = None
    # Further directories of fiche forms (JSON files, docs/fiches.md), read after the shipped
    # catalogue: a département's own or corrected forms, without a code change.
    fiches_catalogue_dirs: tuple[Path, ...] = ()
    # The data-protection contacts printed on fiches, per département (JSON whose keys replace
    # those of portal/data/protection-donnees.json; portal/fiches/protection.py).
    data_protection_contacts_file: Path | None = None
    testing: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Build the settings from FILR_* variables, generating the demo secrets on first start."""
        data_dir = Path(_env("DATA_DIR", "var") or "var").resolve()
        secret_key = _env("SECRET_KEY")
        if not secret_key:
            secret_key = _load_or_create_secret(data_dir / "secrets" / "secret_key")
        if len(secret_key) < 32:
            raise SettingsError("FILR_SECRET_KEY must hold at least 32 characters")
        dsfr = _env("DSFR_DIR")
        if dsfr is None:
            candidate = Path(__file__).resolve().parent.parent / "node_modules/@gouvfr/dsfr/dist"
            dsfr = str(candidate) if candidate.is_dir() else None
        tus_client = _env("TUS_CLIENT_DIR")
        if tus_client is None:
            candidate = Path(__file__).resolve().parent.parent / "node_modules/tus-js-client/dist"
            tus_client = str(candidate) if candidate.is_dir() else None
        base_url = (_env("BASE_URL") or "http://127.0.0.1:8000").rstrip("/")
        # Secure cookies follow the scheme of the public URL; plain HTTP is only tolerated on
        # the loopback interface (the embedded default), where browsers refuse Secure cookies.
        secure_cookies = _bool("SECURE_COOKIES", base_url.startswith("https://"))
        host = urlsplit(base_url).hostname or ""
        if not secure_cookies and host not in {"127.0.0.1", "localhost", "::1"}:
            raise SettingsError(
                "FILR_SECURE_COOKIES=false is only allowed for a loopback FILR_BASE_URL"
            )
        mail_dir = _env("MAIL_DIR")
        smtp_host = _env("SMTP_HOST") or None
        settings = cls(
            secret_key=secret_key,
            database_url=_env("DATABASE_URL") or f"sqlite:///{data_dir / 'filr.db'}",
            data_dir=data_dir,
            storage_url=_env("STORAGE_URL") or f"file://{data_dir / 'objects'}",
            master_key_file=Path(_env("MASTER_KEY_FILE") or data_dir / "secrets" / "master.key"),
            base_url=base_url,
            redis_url=_env("REDIS_URL") or None,
            secure_cookies=secure_cookies,
            session_idle_minutes=_int("SESSION_IDLE_MINUTES", 15, minimum=1),
            session_absolute_hours=_int("SESSION_ABSOLUTE_HOURS", 12, minimum=1),
            trusted_proxy_count=_int("TRUSTED_PROXY_COUNT", 0),
            smtp_host=smtp_host,
            smtp_port=_int("SMTP_PORT", 25, minimum=1),
            smtp_user=_env("SMTP_USER") or None,
            smtp_password=_env("SMTP_PASSWORD") or None,
            smtp_starttls=_bool("SMTP_STARTTLS", False),
            mail_from=_env("MAIL_FROM") or "Fil'R <ne-pas-repondre@filr.localhost>",
            mail_dir=Path(mail_dir) if mail_dir else (None if smtp_host else data_dir / "mails"),
            dsfr_dir=Path(dsfr) if dsfr else None,
            tus_client_dir=Path(tus_client) if tus_client else None,
            throttle_account_per_minute=_int("THROTTLE_ACCOUNT_PER_MINUTE", 5, minimum=1),
            throttle_ip_per_minute=_int("THROTTLE_IP_PER_MINUTE", 20, minimum=1),
            api_requests_per_minute=_int("API_REQUESTS_PER_MINUTE", 300, minimum=1),
            mfa_failures_max=_int("MFA_FAILURES_MAX", 10),
            webauthn_enabled=_bool("WEBAUTHN_ENABLED", True),
            webauthn_required_roles=_roles("WEBAUTHN_REQUIRED_ROLES"),
            webauthn_enrol_deadline=_date("WEBAUTHN_ENROL_DEADLINE"),
            proconnect_issuer=(_env("PROCONNECT_ISSUER") or "").rstrip("/") or None,
            proconnect_discovery_url=_env("PROCONNECT_DISCOVERY_URL") or None,
            proconnect_client_id=_env("PROCONNECT_CLIENT_ID") or None,
            proconnect_client_secret=_env("PROCONNECT_CLIENT_SECRET") or None,
            proconnect_scopes=_env("PROCONNECT_SCOPES") or "openid email given_name usual_name uid",
            proconnect_acr_values=_env("PROCONNECT_ACR_VALUES") or None,
            proconnect_timeout_seconds=_int("PROCONNECT_TIMEOUT_SECONDS", 10, minimum=1),
            max_upload_bytes=_int("MAX_UPLOAD_BYTES", 2 * 1024**3, minimum=1),
            s3_endpoint_url=_env("S3_ENDPOINT_URL") or None,
            s3_region=_env("S3_REGION") or None,
            s3_access_key=_env("S3_ACCESS_KEY") or None,
            s3_secret_key=_env("S3_SECRET_KEY") or None,
            weekly_flow_lifetime_days=_int("WEEKLY_FLOW_LIFETIME_DAYS", 7, minimum=1),
            monthly_flow_lifetime_days=_int("MONTHLY_FLOW_LIFETIME_DAYS", 35, minimum=1),
            weekly_file_lifetime_days=_int("WEEKLY_FILE_LIFETIME_DAYS", 7, minimum=1),
            flow_sanity_drop_percent=_int("FLOW_SANITY_DROP_PERCENT", 50, minimum=1),
            flow_sanity_jump_percent=_int("FLOW_SANITY_JUMP_PERCENT", 100, minimum=1),
            flow_reminder_working_days=_int("FLOW_REMINDER_WORKING_DAYS", 3, minimum=1),
            alert_login_failures_account=_int("ALERT_LOGIN_FAILURES_ACCOUNT", 5, minimum=1),
            alert_login_failures_ip=_int("ALERT_LOGIN_FAILURES_IP", 20, minimum=1),
            alert_login_window_minutes=_int("ALERT_LOGIN_WINDOW_MINUTES", 15, minimum=1),
            alert_downloads_max=_int("ALERT_DOWNLOADS_MAX", 50, minimum=1),
            alert_downloads_window_minutes=_int("ALERT_DOWNLOADS_WINDOW_MINUTES", 60, minimum=1),
            alert_chain_verify_minutes=_int("ALERT_CHAIN_VERIFY_MINUTES", 60),
            alert_unknown_ids=_int("ALERT_UNKNOWN_IDS", 20, minimum=1),
            alert_unknown_ids_window_minutes=_int(
                "ALERT_UNKNOWN_IDS_WINDOW_MINUTES", 10, minimum=1
            ),
            audit_retention_months=_int("AUDIT_RETENTION_MONTHS", 12),
            account_inactive_days=_int("ACCOUNT_INACTIVE_DAYS", 60),
            review_opens=_env("REVIEW_OPENS") or "03-01",
            review_closes=_env("REVIEW_CLOSES") or "04-30",
            incident_partner_notice_hours=_int("INCIDENT_PARTNER_NOTICE_HOURS", 36, minimum=1),
            incident_reminder_hours=_int("INCIDENT_REMINDER_HOURS", 12, minimum=1),
            database_owner_url=_env("DATABASE_OWNER_URL") or None,
            database_app_role=_env("DATABASE_APP_ROLE") or None,
            database_app_password=_env("DATABASE_APP_PASSWORD") or None,
            allow_superuser=_bool("ALLOW_SUPERUSER", False),
            metrics_token=_env("METRICS_TOKEN") or None,
            clamd_url=_env("CLAMD_URL") or "unix:///run/clamav/clamd.ctl",
            clamd_timeout_seconds=_int("CLAMD_TIMEOUT_SECONDS", 120, minimum=1),
            antivirus_max_signature_age_hours=_int(
                "ANTIVIRUS_MAX_SIGNATURE_AGE_HOURS", 48, minimum=1
            ),
            antivirus_bypass=_bool("ANTIVIRUS_BYPASS", False),
            antivirus_inline_max_bytes=_int("ANTIVIRUS_INLINE_MAX_BYTES", 32 * 1024**2),
            antivirus_max_scan_attempts=_int("ANTIVIRUS_MAX_SCAN_ATTEMPTS", 10, minimum=1),
            resumable_uploads=_bool("RESUMABLE_UPLOADS", False),
            resumable_max_chunk_bytes=_int(
                "RESUMABLE_MAX_CHUNK_BYTES", 64 * 1024**2, minimum=5 * 1024**2
            ),
            resumable_expiry_hours=_int("RESUMABLE_EXPIRY_HOURS", 24, minimum=1),
            # Embedded default (objects in a local directory): backups in another one, so that
            # the demo's scheduled backup and drill work; production names its backup site.
            backup_url=_env("BACKUP_URL")
            or (f"file://{data_dir / 'backups'}" if not _env("STORAGE_URL") else None),
            backup_s3_endpoint_url=_env("BACKUP_S3_ENDPOINT_URL") or None,
            backup_s3_region=_env("BACKUP_S3_REGION") or None,
            backup_s3_access_key=_env("BACKUP_S3_ACCESS_KEY") or None,
            backup_s3_secret_key=_env("BACKUP_S3_SECRET_KEY") or None,
            backup_key_file=Path(_env("BACKUP_KEY_FILE") or data_dir / "secrets" / "backup.key"),
            backup_retention_days=_int("BACKUP_RETENTION_DAYS", 35),
            backup_drill_storage_url=_env("BACKUP_DRILL_STORAGE_URL") or None,
            fiches_catalogue_dirs=tuple(
                Path(p) for p in (_env("FICHES_CATALOGUE_DIRS") or "").split(":") if p.strip()
            ),
            data_protection_contacts_file=(
                Path(contacts) if (contacts := _env("DATA_PROTECTION_CONTACTS_FILE")) else None
            ),
        )
        return replace(settings, **overrides) if overrides else settings

    def __post_init__(self) -> None:
        if self.metrics_token is not None and len(self.metrics_token) < METRICS_TOKEN_MIN:
            raise SettingsError(
                f"{ENV_PREFIX}METRICS_TOKEN must hold at least {METRICS_TOKEN_MIN} characters"
            )
        if not AUDIT_RETENTION_MIN <= self.audit_retention_months <= AUDIT_RETENTION_MAX:
            raise SettingsError(
                f"{ENV_PREFIX}AUDIT_RETENTION_MONTHS must be between {AUDIT_RETENTION_MIN} "
                f"and {AUDIT_RETENTION_MAX} (months), not {self.audit_retention_months}"
            )
        if not ACCOUNT_INACTIVE_MIN <= self.account_inactive_days <= ACCOUNT_INACTIVE_MAX:
            raise SettingsError(
                f"{ENV_PREFIX}ACCOUNT_INACTIVE_DAYS must be between {ACCOUNT_INACTIVE_MIN} "
                f"and {ACCOUNT_INACTIVE_MAX} (days), not {self.account_inactive_days}"
            )
        if not 1 <= self.weekly_file_lifetime_days <= 90:
            raise SettingsError(
                f"{ENV_PREFIX}WEEKLY_FILE_LIFETIME_DAYS must be between 1 and 90 (days), "
                f"not {self.weekly_file_lifetime_days}"
            )
        if not 1 <= self.incident_partner_notice_hours <= 168:
            raise SettingsError(
                f"{ENV_PREFIX}INCIDENT_PARTNER_NOTICE_HOURS must be between 1 and 168 (hours)"
            )
        opens, closes = month_day(self.review_opens), month_day(self.review_closes)
        if opens is None or closes is None or closes <= opens:
            raise SettingsError(
                f"{ENV_PREFIX}REVIEW_OPENS and {ENV_PREFIX}REVIEW_CLOSES must be days of the "
                f"same year (MM-JJ, the opening first), not {self.review_opens!r} and "
                f"{self.review_closes!r}"
            )
        if not BACKUP_RETENTION_MIN <= self.backup_retention_days <= BACKUP_RETENTION_MAX:
            raise SettingsError(
                f"{ENV_PREFIX}BACKUP_RETENTION_DAYS must be between {BACKUP_RETENTION_MIN} "
                f"and {BACKUP_RETENTION_MAX} (days), not {self.backup_retention_days}"
            )
        if not MFA_FAILURES_MIN <= self.mfa_failures_max <= MFA_FAILURES_MAX:
            raise SettingsError(
                f"{ENV_PREFIX}MFA_FAILURES_MAX must be between {MFA_FAILURES_MIN} "
                f"and {MFA_FAILURES_MAX}, not {self.mfa_failures_max}"
            )

        parse_clamd_url(self.clamd_url)
        if self.proconnect_issuer and "openid" not in self.proconnect_scopes.split():
            raise SettingsError(f"{ENV_PREFIX}PROCONNECT_SCOPES must contain openid")
        for name, url in (
            ("PROCONNECT_ISSUER", self.proconnect_issuer),
            ("PROCONNECT_DISCOVERY_URL", self.proconnect_discovery_url),
        ):
            if url is not None:
                _check_provider_url(name, url)

    @property
    def proconnect_enabled(self) -> bool:
        """ProConnect log-in is configured (issuer, client id and secret)."""
        return bool(
            self.proconnect_issuer and self.proconnect_client_id and self.proconnect_client_secret
        )

    @property
    def migration_database_url(self) -> str:
        """The URL migrations and the audit retention purge use (the tables' owner)."""
        return self.database_owner_url or self.database_url

    def with_overrides(self, **overrides: Any) -> Settings:
        """Return a copy with some fields replaced (tests, CLI)."""
        return replace(self, **overrides)


_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


def _check_provider_url(name: str, url: str) -> None:
    """An identity provider's URL: HTTPS (plain HTTP only on the loopback, for tests), no
    credentials, query or fragment: its keys are fetched from there, and its origin goes into
    the CSP's form-action (portal.gate.csp_for)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        raise SettingsError(f"{ENV_PREFIX}{name} is not a URL: {url!r}") from None
    plain_ok = parts.scheme == "http" and host in _LOOPBACK
    if (
        not (parts.scheme == "https" or plain_ok)
        or not host
        or "@" in parts.netloc
        or parts.query
        or parts.fragment
        or any(c in url for c in " ;,'\"\n\r\t")
    ):
        raise SettingsError(
            f"{ENV_PREFIX}{name} must be an https:// URL without credentials, query or "
            f"fragment, not {url!r}"
        )
