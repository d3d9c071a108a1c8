"""Fiches de liaison through the portal: sending over the API, the PDF, the inbox at 100,000.

One run starts its own SeaweedFS, a throwaway PostgreSQL database and `filr serve` (gunicorn,
plain HTTP on 127.0.0.1, S3 storage on that SeaweedFS: the production stack), provisions France
Travail 62 (an adviser), the CD 62 (its SLAI agent) and a provider of 62, then measures:

  a. sending: --fiches (default 2,000) complete bilatérale fiches POSTed to /api/v1/fiches by
     --clients (default 8) concurrent clients, each on its own keep-alive connection, with
     one token (FILR_API_REQUESTS_PER_MINUTE is raised for the run: the limit is not what is
     measured). Each is validated against the catalogue, encrypted into the store, sealed for
     the inbox, audited, and its recipients are mailed (to files). Fiches per second over the
     wall time, p50/p95/max of each request. Targets: >= 200 fiches/s, p95 <= 200 ms.
  b. the PDF: --pdfs (default 60) GETs of /api/v1/fiches/<id>/pdf by the SLAI, one at a time
     (each decrypts, audits, renders the print layout with WeasyPrint into a PDF/UA-1).
     Target: p95 <= 500 ms.
  c. the inbox at --inbox (default 100,000) fiches: rows as the portal leaves them (the person
     sealed as the portal seals it, 90 days of sending, decided, waiting, overdue, destroyed)
     in 62 and 59 are COPYed in; then --pages (default 200) GETs by the logged-in SLAI of
     /fiches (received, sent, overdue, and a surname search) and of /api/v1/fiches
     (received, overdue). Target: p95 <= 50 ms.

Every process and the database are removed at the end, also on failure or SIGTERM.

    .venv/bin/python benchmarks/fiches.py            # full sizes (a few minutes)
    .venv/bin/python benchmarks/fiches.py --quick    # smoke run: small sizes, targets not judged
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import signal
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script from anywhere in the checkout

from benchmarks.http_throughput import (  # noqa: E402 - after the path is set
    ADMIN_URL,
    HOST,
    Account,
    Browser,
    cpu_seconds,
    free_port,
    log_in,
    percentile,
    run_filr,
    run_filr_json,
    running_portal,
    throwaway_database,
    worker_pids,
)

BUCKET = "filr-bench-fiches"
SEND_RATE_TARGET = 200.0  # fiches per second
SEND_P95_TARGET_MS = 200.0
PDF_P95_TARGET_MS = 500.0
INBOX_P95_TARGET_MS = 50.0
SURNAMES = [
    "Martin",
    "Bernard",
    "Dubois",
    "Thomas",
    "Robert",
    "Richard",
    "Petit",
    "Durand",
    "Leroy",
    "Moreau",
    "Simon",
]
FIRST_NAMES = ["Camille", "Louis", "Léa", "Hugo", "Chloé", "Lucas", "Inès", "Jules", "Zoé"]


@dataclass
class Parties:
    cd62: str
    cd59: str
    ft62: str
    provider62: str
    adviser: Account
    slai: Account
    slai59_user: str


def provision(env: dict[str, str]) -> Parties:
    def org(kind: str, name: str, *options: str) -> str:
        args = ["orgs", "create", "--kind", kind, "--name", name, *options, "--json"]
        return str(run_filr_json(env, *args)["id"])

    def person(org_id: str, email: str, name: str) -> Account:
        password = "-".join(secrets.token_hex(4) for _ in range(4))
        args = ["users", "create", "--org", org_id, "--email", email, "--name", name]
        args += ["--role", "agent", "--json", "--password-stdin", "--with-totp"]
        made = run_filr_json(env, *args, stdin=password + "\n")
        return Account(email, password, made["totp_secret"], made["id"], org_id)

    cd62 = org("departement", "CD 62 (banc)", "--departement", "62")
    cd59 = org("departement", "CD 59 (banc)", "--departement", "59")
    ft62 = org("france_travail", "France Travail Arras (banc)", "--territory", "62")
    provider62 = org("prestataire", "Association 62 (banc)", "--departement", "62")
    adviser = person(ft62, "conseil@banc.filr.localhost", "Claire Conseillère")
    slai = person(cd62, "slai@banc.filr.localhost", "Sami Slai")
    slai59 = person(cd59, "slai59@banc.filr.localhost", "Nora Nord")
    return Parties(cd62, cd59, ft62, provider62, adviser, slai, slai59.user_id)


def token_of(browser: Browser, account: Account) -> str:
    """A read + deposit token of *account*, created on its page as a person does."""
    reply = browser.post_form(
        "/compte/jetons",
        [
            ("csrf_token", browser.get("/compte/jetons").csrf()),
            ("name", "banc fiches"),
            ("scopes", "read"),
            ("scopes", "deposit"),
            ("lifetime_days", "7"),
            ("current", account.password),
        ],
    )
    match = re.search(r"filr_[A-Za-z0-9_-]{20,}", reply.text)
    if reply.status != 200 or match is None:
        raise RuntimeError(f"token creation failed ({reply.status})")
    return match.group(0)


def fiche_body(parties: Parties, n: int) -> bytes:
    rng = random.Random(n)
    values = {
        "date_fiche": "2026-12-01",
        "structure_prescriptrice": "france_travail",
        "prescripteur": parties.adviser.user_id,
        "slai": parties.cd62,
        "suivi": "referent_mandate",
        "structure_mandatee": parties.provider62,
        "demandeur": {"nom": rng.choice(SURNAMES), "prenom": rng.choice(FIRST_NAMES)},
        "date_naissance": f"19{rng.randint(60, 99)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
        "adresse": {"voie": f"{n} rue des Lilas", "code_postal": "62000", "commune": "Arras"},
        "consentement_numerique": True,
        "email": f"personne{n}@example.org",
        "identifiant_ft": f"{rng.randint(1000000, 9999999)}A",
        "identifiant_caf": f"{rng.randint(1000000, 9999999)}",
        "situation_famille": rng.choice(["seul", "couple"]),
        "enfants_a_charge": rng.randint(0, 4),
        "brsa": True,
        "rqth": rng.random() < 0.1,
        "freins": rng.sample(["logement", "transport", "sante", "financieres"], 2),
        "attestation_signee": True,
    }
    body = {"form": "liaison-bilaterale", "departement": "62", "recipient": parties.cd62,
            "values": values}  # fmt: skip
    return json.dumps(body).encode()


def report(title: str, ms: list[float], target: float | None) -> bool:
    ok = target is None or percentile(ms, 0.95) <= target
    verdict = (
        "" if target is None else (f"  target p95 <= {target:g} ms: " + ("OK" if ok else "MISSED"))
    )
    print(
        f"  {title:<34} n={len(ms):>5}  p50 {percentile(ms, 0.5):7.1f} ms  "
        f"p95 {percentile(ms, 0.95):7.1f} ms  max {max(ms):7.1f} ms{verdict}",
        flush=True,
    )
    return ok


def send_fiches(
    port: int, secret: str, parties: Parties, total: int, clients: int
) -> tuple[float, list[float], list[str]]:
    """POST *total* fiches with *clients* threads; returns (wall seconds, latencies, ids)."""
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    bodies = [fiche_body(parties, n) for n in range(total)]
    latencies: list[float] = []
    ids: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(total))

    def work() -> None:
        client = Browser(port)
        try:
            while True:
                with lock:
                    n = next(counter, None)
                if n is None:
                    return
                start = time.perf_counter()
                reply = client.request("POST", "/api/v1/fiches", bodies[n], headers)
                ms = (time.perf_counter() - start) * 1000
                with lock:
                    if reply.status != 201:
                        errors.append(f"{reply.status} {reply.text[:300]}")
                        continue
                    latencies.append(ms)
                    ids.append(json.loads(reply.body)["id"])
        finally:
            client.close()

    threads = [threading.Thread(target=work) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} fiche(s) refused, first: {errors[0]}")
    return wall, latencies, ids


def insert_fiches(database_url: str, secret_key: str, parties: Parties, count: int) -> float:
    """COPY *count* fiches as the portal leaves them; returns the seconds it took."""
    import psycopg

    from portal.fiches.services import PersonSeal

    seal = PersonSeal(secret_key)
    rng = random.Random(62)
    now = datetime.now(UTC)
    start = time.perf_counter()
    columns = (
        "id, form_id, form_version, departement_code, sender_id, sender_org_id, "
        "recipient_org_id, forwarded_org_id, state, values_key, person_sealed, person_index, "
        "created_at, updated_at, sent_at, received_at, due_at, decision, expires_at, destroyed_at"
    )
    with psycopg.connect(database_url) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY fiche ({columns}) FROM STDIN") as copy:
            for _ in range(count):
                fiche_id = uuid.uuid4().hex
                in62 = rng.random() < 0.85
                sent = now - timedelta(minutes=rng.randint(10, 89 * 24 * 60))
                roll = rng.random()
                state, decision, received, destroyed = "received", None, sent, None
                if roll < 0.5:
                    state, decision = rng.choice([("accepted", "oui"), ("refused", "non")])
                elif roll < 0.6:
                    state, received = "sent", None
                elif roll < 0.7:
                    state, destroyed = "destroyed", sent + timedelta(days=90)
                surname = rng.choice(SURNAMES)
                sealed = index = None
                if state != "destroyed":
                    birth = f"19{rng.randint(60, 99)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}"
                    sealed = seal.seal(fiche_id, f"{surname.upper()} {rng.choice(FIRST_NAMES)}",
                                       birth)  # fmt: skip
                    index = seal.index(surname)
                copy.write_row((
                    fiche_id, "liaison-bilaterale", 1, "62" if in62 else "59",
                    parties.adviser.user_id if in62 else parties.slai59_user,
                    parties.ft62 if in62 else parties.cd59,
                    parties.cd62 if in62 else parties.cd59,
                    parties.provider62 if in62 and rng.random() < 0.3 else None,
                    state, None, sealed, index, sent, sent, sent, received,
                    sent + timedelta(days=21), decision, sent + timedelta(days=90), destroyed,
                ))  # fmt: skip
        conn.commit()
        cur.execute("ANALYZE fiche")
        conn.commit()
    return time.perf_counter() - start


def timed_gets(
    client: Browser, urls: list[str], total: int, headers: dict[str, str] | None = None
) -> dict[str, list[float]]:
    for url in urls:  # warm-up, untimed
        client.request("GET", url, headers=headers)
    by_url: dict[str, list[float]] = {u: [] for u in urls}
    for n in range(total):
        url = urls[n % len(urls)]
        start = time.perf_counter()
        reply = client.request("GET", url, headers=headers)
        ms = (time.perf_counter() - start) * 1000
        if reply.status != 200:
            raise RuntimeError(f"GET {url} answered {reply.status}")
        by_url[url].append(ms)
    return by_url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, targets not judged")
    parser.add_argument("--fiches", type=int, help="fiches sent through the API (default 2000)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent API clients")
    parser.add_argument("--pdfs", type=int, help="PDFs downloaded (default 60)")
    parser.add_argument("--inbox", type=int, help="fiches in the inbox (default 100000)")
    parser.add_argument("--pages", type=int, help="inbox GETs timed (default 200)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--admin-url", default=ADMIN_URL, help="PostgreSQL maintenance database")
    args = parser.parse_args()
    total = args.fiches or (200 if args.quick else 2000)
    pdfs = args.pdfs or (10 if args.quick else 60)
    inbox = args.inbox or (5_000 if args.quick else 100_000)
    pages = args.pages or (40 if args.quick else 200)

    def _terminate(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)  # runs the finally blocks: processes and database go

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)

    from tests.support.seaweedfs import running_seaweedfs

    missed: list[str] = []
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="filr-fiches-bench-")))
        endpoint = stack.enter_context(running_seaweedfs(work / "seaweedfs", bucket=BUCKET))
        database = stack.enter_context(throwaway_database(args.admin_url))
        database_url = f"{args.admin_url.rsplit('/', 1)[0]}/{database}"
        port = free_port()
        secret_key = secrets.token_urlsafe(48)
        env = {
            **os.environ,
            "FILR_DATABASE_URL": database_url.replace("postgresql://", "postgresql+psycopg://"),
            "FILR_DATA_DIR": str(work / "data"),
            "FILR_SECRET_KEY": secret_key,
            "FILR_STORAGE_URL": f"s3://{BUCKET}/portal",
            "FILR_S3_ENDPOINT_URL": endpoint.endpoint_url,
            "FILR_S3_REGION": endpoint.region,
            "FILR_S3_ACCESS_KEY": endpoint.access_key,
            "FILR_S3_SECRET_KEY": endpoint.secret_key,
            "FILR_SECURE_COOKIES": "false",
            "FILR_BASE_URL": f"http://{HOST}:{port}",
            "FILR_MAIL_DIR": str(work / "mails"),
            "FILR_SESSION_IDLE_MINUTES": "120",
            "FILR_API_REQUESTS_PER_MINUTE": "1000000",
            # The throwaway database belongs to the maintenance role (a benchmark, not a server).
            "FILR_ALLOW_SUPERUSER": "1",
            "PYTHONPATH": str(ROOT),
        }
        run_filr(env, "db", "upgrade")
        parties = provision(env)
        portal = stack.enter_context(
            running_portal(env, port, args.workers, args.threads, work / "gunicorn.log")
        )
        adviser, slai = Browser(port), Browser(port)
        stack.callback(adviser.close)
        stack.callback(slai.close)
        log_in(adviser, parties.adviser)
        log_in(slai, parties.slai)
        adviser_token, slai_token = token_of(adviser, parties.adviser), token_of(slai, parties.slai)
        print(
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; gunicorn "
            f"{args.workers} workers x {args.threads} threads; PostgreSQL {database}, "
            "S3 on SeaweedFS",
            flush=True,
        )
        send_fiches(port, adviser_token, parties, 20, 2)  # warm-up, untimed

        print(f"\na. {total} fiches sent through POST /api/v1/fiches by {args.clients} clients:")
        before = cpu_seconds(worker_pids(portal.pid))
        wall, latencies, ids = send_fiches(port, adviser_token, parties, total, args.clients)
        cpu = cpu_seconds(worker_pids(portal.pid)) - before
        rate = total / wall
        print(f"  {rate:.0f} fiches/s ({wall:.1f} s wall, {cpu / total * 1000:.1f} ms of worker "
              f"CPU a fiche)  target >= {SEND_RATE_TARGET:g}/s: "
              + ("OK" if rate >= SEND_RATE_TARGET else "MISSED"), flush=True)  # fmt: skip
        if rate < SEND_RATE_TARGET:
            missed.append("send rate")
        if not report("each POST", latencies, SEND_P95_TARGET_MS):
            missed.append("send p95")

        print(f"\nb. {pdfs} PDFs (GET /api/v1/fiches/<id>/pdf), one at a time:")
        client = Browser(port)
        stack.callback(client.close)
        headers = {"Authorization": f"Bearer {slai_token}"}
        client.request("GET", f"/api/v1/fiches/{ids[0]}/pdf", headers=headers)  # warm-up
        pdf_ms: list[float] = []
        sizes: list[int] = []
        before = cpu_seconds(worker_pids(portal.pid))
        for fiche_id in ids[1 : pdfs + 1]:
            start = time.perf_counter()
            reply = client.request("GET", f"/api/v1/fiches/{fiche_id}/pdf", headers=headers)
            pdf_ms.append((time.perf_counter() - start) * 1000)
            if reply.status != 200 or not reply.body.startswith(b"%PDF-"):
                raise RuntimeError(f"PDF answered {reply.status}")
            sizes.append(len(reply.body))
        cpu = cpu_seconds(worker_pids(portal.pid)) - before
        print(f"  {cpu / len(pdf_ms) * 1000:.0f} ms of worker CPU a PDF", flush=True)
        if not report(f"PDF (~{sum(sizes) // len(sizes) // 1024} KiB)", pdf_ms, PDF_P95_TARGET_MS):
            missed.append("PDF p95")

        print(f"\nc. the inbox with {inbox:,} more fiches (62 and 59):")
        seconds = insert_fiches(database_url, secret_key, parties, inbox)
        print(f"  generated in {seconds:.1f} s", flush=True)
        web = timed_gets(
            slai,
            ["/fiches", "/fiches?boite=envoyees", "/fiches?boite=en-retard", "/fiches?nom=durand"],
            pages,
        )
        api = timed_gets(
            client,
            ["/api/v1/fiches", "/api/v1/fiches?box=overdue"],
            max(pages // 2, 2),
            headers,
        )
        everything: list[float] = []
        for url, ms in [*web.items(), *api.items()]:
            report(url, ms, None)
            everything += ms
        if not report("every inbox GET", everything, INBOX_P95_TARGET_MS):
            missed.append("inbox p95")
    if args.quick:
        print("\n--quick: sizes too small to judge the targets")
        return 0
    print("\nAll targets met." if not missed else f"\nMissed: {', '.join(missed)}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
