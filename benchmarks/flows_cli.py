"""`filr flows validate` as technicians' scripts run it: start-up, then a 200,000-record file
against `xmllint --stream --schema` on the same file, start-up included on both sides.

benchmarks/flows.py times the `validate()` call alone; this one times the whole command, as a
fresh process each run (interpreter, imports, parsing, report), because that is what a script
that checks every file before depositing it pays:
  * start-up: `filr flows validate` on a 10-record file, `--runs` times; best and median wall
    time and peak RSS (target: <= 0.3 s), beside a bare `python -c pass` and `xmllint`;
  * the large file (the cached CGPEM of benchmarks/flows.py): wall and CPU time and peak RSS of
    the command (os.wait4: the child's own rusage) against `xmllint --stream --noout --schema`
    with the XSD shipped in the package; runs alternate so both meet the same machine load, the
    best of each is kept. Targets: <= 2 x xmllint's wall time, peak < 100 MiB.

    python benchmarks/flows_cli.py                  # 200,000 records, 3 runs each
    python benchmarks/flows_cli.py --records 20000 --runs 1 --check
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Nothing of the portal is imported here: only the helpers of the validator's benchmark.
from benchmarks.flows import (  # noqa: E402 - the path is set above
    XSD,
    Run,
    find_xmllint,
    flow_arguments,
    run_xmllint,
    sample_file,
    wait_child,
    with_table_spellings,
)

STARTUP_TARGET_SECONDS = 0.3
MEMORY_TARGET_MIB = 100
RATIO_TARGET = 2.0


def filr_command() -> list[str]:
    """The `filr` console script of this interpreter's environment, or its equivalent."""
    script = Path(sys.executable).with_name("filr")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from portal.cli import main; sys.exit(main())"]


def run_command(command: list[str]) -> Run:
    """Wall time, CPU time and peak RSS of one process; ok when it exits 0."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    output = process.stdout.read() + process.stderr.read()
    status, wall, cpu, maxrss = wait_child(process, started)
    last = output.decode(errors="replace").strip().splitlines()
    return Run(wall, cpu, maxrss, status == 0, last[-1] if last else f"exit {status}")


def validate_command(path: Path) -> list[str]:
    return [
        *filr_command(),
        "flows",
        "validate",
        "--type",
        "cgpem",
        "--departement",
        "62",
        str(path),
    ]


def startup(path: Path, xmllint: str, runs: int) -> tuple[list[Run], list[Run], list[Run]]:
    """`filr flows validate`, `python -c pass` and xmllint on a small file, *runs* times each."""
    ours, bare, theirs = [], [], []
    for _ in range(runs):
        ours.append(run_command(validate_command(path)))
        bare.append(run_command([sys.executable, "-c", "pass"]))
        theirs.append(run_xmllint(xmllint, XSD, path))
    return ours, bare, theirs


def _walls(runs: list[Run]) -> str:
    walls = [r.wall for r in runs]
    return f"meilleur {min(walls):5.3f} s, médiane {statistics.median(walls):5.3f} s"


def main() -> int:
    parser = flow_arguments(__doc__.splitlines()[0])
    parser.add_argument("--startup-runs", type=int, default=10)
    arguments = parser.parse_args()
    xmllint = find_xmllint()
    if xmllint is None:
        return 2
    today = date.today()
    small = sample_file(10, arguments.cache, arguments.seed, today.replace(day=1))
    large = sample_file(arguments.records, arguments.cache, arguments.seed, today.replace(day=1))
    checked = with_table_spellings(large) if arguments.spellings else large

    ours, bare, theirs = startup(small, xmllint, arguments.startup_runs)
    if not all(run.ok for run in ours + bare + theirs):
        for run in ours + theirs:
            print("ÉCHEC :", run.detail, file=sys.stderr)
        return 1
    startup_best = min(r.wall for r in ours)
    startup_peak = max(r.maxrss_kib for r in ours) / 1024
    print(f"démarrage (fichier de 10 dossiers, {arguments.startup_runs} exécutions) :")
    print(f"  filr flows validate : {_walls(ours)}, pic {startup_peak:.0f} Mio")
    print(f"  python -c pass      : {_walls(bare)} (l'interpréteur seul)")
    print(f"  xmllint --stream    : {_walls(theirs)}")

    command, reference = [], []
    for _ in range(arguments.runs):
        command.append(run_command(validate_command(checked)))
        reference.append(run_xmllint(xmllint, XSD, large))
    if not all(run.ok for run in command + reference):
        for run in command + reference:
            print("ÉCHEC :", run.detail, file=sys.stderr)
        return 1
    best, other = min(command, key=lambda r: r.wall), min(reference, key=lambda r: r.wall)
    peak = max(r.maxrss_kib for r in command) / 1024
    ratio = best.wall / other.wall
    size_mib = large.stat().st_size / 2**20
    print(f"fichier : {arguments.records} dossiers CGPEM, {size_mib:.0f} Mio ({checked})")
    print(f"exécutions : {arguments.runs} de chaque, alternées ; meilleure retenue")
    print(
        f"filr flows validate : {best.wall:6.2f} s mur, {min(r.cpu for r in command):6.2f} s CPU, "
        f"pic {peak:.0f} Mio — {best.detail}"
    )
    print(
        f"xmllint             : {other.wall:6.2f} s mur, {min(r.cpu for r in reference):6.2f} s "
        f"CPU, pic {other.maxrss_kib / 1024:.0f} Mio (--stream --schema, XSD seule)"
    )
    print(f"rapport             : {ratio:.2f} x (mur, démarrage compris) — cible <= {RATIO_TARGET}")
    met = (
        startup_best <= STARTUP_TARGET_SECONDS
        and ratio <= RATIO_TARGET
        and peak < MEMORY_TARGET_MIB
    )
    print(
        f"objectifs           : démarrage <= {STARTUP_TARGET_SECONDS} s, <= {RATIO_TARGET} x "
        f"xmllint, pic < {MEMORY_TARGET_MIB} Mio : {'atteints' if met else 'NON atteints'}"
    )
    return 0 if met or not arguments.check else 1


if __name__ == "__main__":
    sys.exit(main())
