"""Flow validator against `xmllint --stream --schema` on a 200,000-record CGPEM, same run.

Generates (once, cached) a synthetic CGPEM with `portal.flows.core.sample`, then, alternating so
that both meet the same machine load, and `--runs` times each:
  * our validator (`portal.flows.core.validate`: hardened parsing, encoding checks, XSD of every
    header/record/footer, every business rule) in a fresh subprocess, which reports the time of
    the `validate()` call and its peak RSS (ru_maxrss of the process, and VmHWM growth during
    the call);
  * `xmllint --stream --noout --schema CGPEM_001_0.xsd FILE` (Debian `libxml2-utils`) on the same
    file and the very XSD shipped in the package: wall time, CPU time and peak RSS.
The best run of each is kept. Targets: peak RSS < 150 MiB, time <= 2 x xmllint's.

    python benchmarks/flows.py                  # 200,000 records, 3 runs each
    python benchmarks/flows.py --records 20000 --runs 1 --check
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
XSD = ROOT / "portal" / "flows" / "core" / "xsd" / "CGPEM_001_0.xsd"
# This process imports nothing from the portal and stays small: a child's peak RSS as seen by
# wait4() includes the pages it shared with its parent at fork time.

MEMORY_TARGET_MIB = 150
RATIO_TARGET = 2.0

# Runs in the child: only the validate() call is timed (interpreter start-up and imports are
# not validation work; xmllint's own start-up is a few milliseconds).
CHILD = """
import json, resource, sys, time
from datetime import date
from pathlib import Path

def vm(name):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0

from portal.flows.core import FlowType, validate
path, today = Path(sys.argv[1]), date.fromisoformat(sys.argv[2])
try:
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM: growth is then the call's own
except OSError:
    pass
before = vm("VmRSS")
wall, cpu = time.perf_counter(), time.process_time()
report = validate(path, expected_type=FlowType.CGPEM, departement="62", today=today)
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
print(json.dumps({
    "wall": wall,
    "cpu": cpu,
    "valid": report.is_valid,
    "records": report.record_count,
    "issues": report.error_count + report.warning_count,
    "rss_before_kib": before,
    "hwm_kib": vm("VmHWM"),
    "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
}))
"""


@dataclass(frozen=True)
class Run:
    wall: float
    cpu: float
    maxrss_kib: int
    ok: bool
    detail: str = ""
    growth_kib: int = 0


def wait_child(process: subprocess.Popen[bytes], started: float) -> tuple[int, float, float, int]:
    """Exit status, wall time, CPU time and peak RSS of one child (os.wait4: its own rusage)."""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    return process.returncode, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def run_validator(path: Path, today: date) -> Run:
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), today.isoformat()],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    output = process.stdout.read()
    status, _, _, maxrss = wait_child(process, started)
    if status != 0:
        return Run(0, 0, maxrss, False, f"exit {status}")
    result = json.loads(output)
    return Run(
        result["wall"],
        result["cpu"],
        result["maxrss_kib"],
        result["valid"] and result["records"] > 0,
        f"{result['records']} dossiers, {result['issues']} anomalie(s)",
        result["hwm_kib"] - result["rss_before_kib"],
    )


def run_xmllint(xmllint: str, schema: Path, path: Path) -> Run:
    started = time.perf_counter()
    process = subprocess.Popen(
        [xmllint, "--stream", "--noout", "--schema", str(schema), str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    message = process.stderr.read().decode(errors="replace").strip().splitlines()
    status, wall, cpu, maxrss = wait_child(process, started)
    return Run(wall, cpu, maxrss, status == 0, message[-1] if message else f"exit {status}")


GENERATE = """
import sys
from datetime import date
from portal.flows.core import FlowType
from portal.flows.core.sample import write_sample
write_sample(sys.argv[1], FlowType.CGPEM, int(sys.argv[2]), "62", seed=int(sys.argv[3]),
             date_reference=date.fromisoformat(sys.argv[4]))
"""


def sample_file(records: int, cache: Path, seed: int, reference: date) -> Path:
    """The generated file, rebuilt when the generator or the structure changes."""
    flows = ROOT / "portal" / "flows" / "core"
    version = hashlib.sha256(
        (flows / "sample.py").read_bytes() + (flows / "versions" / "v001_0.py").read_bytes()
    ).hexdigest()[:12]
    path = cache / f"cgpem-{records}-{seed}-{reference.isoformat()}-{version}.xml"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part")
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", GENERATE, str(partial), str(records), str(seed), str(reference)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            check=True,
        )
        partial.replace(path)
        print(f"généré en {time.perf_counter() - started:.1f} s : {path}")
    return path


# The convention tables' spellings (capitals, accents) of names of every CGPEM record and of the
# header and footer: what a vendor who copies the tables writes (see portal/flows/core/spelling.py).
TABLE_SPELLINGS = (
    (b"departement>", b"Departement>"),
    (b"prenom>", b"Pr\xe9nom>"),
    (b"<nom>", b"<Nom>"),
    (b"</nom>", b"</Nom>"),
    (b"date-decision>", b"Date-d\xe9cision>"),
)


def with_table_spellings(path: Path) -> Path:
    """A copy of `path` written with the tables' spellings (cached beside it)."""
    target = path.with_name(path.stem + "-tables.xml")
    if not target.exists():
        partial = target.with_suffix(".part")
        with path.open("rb") as source, partial.open("wb") as output:
            for line in source:
                for canonical, spelling in TABLE_SPELLINGS:
                    line = line.replace(canonical, spelling)
                output.write(line)
        partial.replace(target)
    return target


def flow_arguments(description: str) -> argparse.ArgumentParser:
    """The options every flows benchmark takes (size, runs, seed, sample cache, --check)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "filr-bench-flows"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--spellings",
        action="store_true",
        help="valider la copie aux orthographes des tables (xmllint garde l'original)",
    )
    return parser


def find_xmllint() -> str | None:
    """The baseline's path, or None after saying how to install it."""
    xmllint = shutil.which("xmllint")
    if xmllint is None:
        print("xmllint introuvable : apt-get install -y libxml2-utils", file=sys.stderr)
    return xmllint


def main() -> int:
    arguments = flow_arguments(__doc__.splitlines()[0]).parse_args()
    xmllint = find_xmllint()
    if xmllint is None:
        return 2
    today = date.today()
    path = sample_file(arguments.records, arguments.cache, arguments.seed, today.replace(day=1))
    checked = with_table_spellings(path) if arguments.spellings else path
    size_mib = path.stat().st_size / 2**20
    ours: list[Run] = []
    theirs: list[Run] = []
    for _ in range(arguments.runs):
        ours.append(run_validator(checked, today))
        theirs.append(run_xmllint(xmllint, XSD, path))
    if not all(run.ok for run in ours + theirs):
        for run in ours + theirs:
            print("ÉCHEC :", run.detail, file=sys.stderr)
        return 1
    best, reference = min(ours, key=lambda r: r.wall), min(theirs, key=lambda r: r.wall)
    best_cpu, reference_cpu = min(r.cpu for r in ours), min(r.cpu for r in theirs)
    peak_mib = max(r.maxrss_kib for r in ours) / 1024
    growth_mib = max(r.growth_kib for r in ours) / 1024
    ratio, cpu_ratio = best.wall / reference.wall, best_cpu / reference_cpu

    print(f"fichier : {arguments.records} dossiers CGPEM, {size_mib:.0f} Mio ({checked})")
    if arguments.spellings:
        print("orthographes des tables : 4 noms par dossier renommés avant la vérification")
    print(f"exécutions : {arguments.runs} de chaque, alternées ; meilleure retenue")
    print(f"validateur : {best.wall:6.2f} s mur, {best_cpu:6.2f} s CPU — {best.detail}")
    print(
        f"xmllint    : {reference.wall:6.2f} s mur, {reference_cpu:6.2f} s CPU "
        f"(--stream --schema, XSD seule), pic <= {reference.maxrss_kib / 1024:.0f} Mio"
    )
    print(f"rapport    : {ratio:.2f} x (mur), {cpu_ratio:.2f} x (CPU) — cible <= {RATIO_TARGET}")
    print(
        f"mémoire    : pic {peak_mib:.0f} Mio (processus entier, imports compris), "
        f"+{growth_mib:.0f} Mio pendant la validation — cible < {MEMORY_TARGET_MIB} Mio"
    )
    met = ratio <= RATIO_TARGET and peak_mib < MEMORY_TARGET_MIB
    print("objectifs  :", "atteints" if met else "NON atteints")
    return 0 if met or not arguments.check else 1


if __name__ == "__main__":
    sys.exit(main())
