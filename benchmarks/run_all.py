"""Run every benchmark and write one summary: ``make bench`` calls this.

1. ``bench_train.py``: matmul ceilings, training and inference images/s for every size, batch and mode;
2. ``bench_data.py`` (when present): images/s of the data pipeline (decode vs preprocessing cache);
3. ``SUMMARY.md`` in the output folder, combining both, with the commands and how long each took, and the
   report of an earlier ``bench_precision.py`` run (bf16 vs fp32 accuracy over seeds) when there is one.

    python benchmarks/run_all.py                 # full run on the CPU (about 15 min on 2 cores)
    python benchmarks/run_all.py --quick         # check everything works (results in benchmarks/results/quick)
    python benchmarks/run_all.py --device cuda   # on a GPU machine
    python benchmarks/run_all.py -- --modes fp32 bf16   # anything after -- goes to bench_train.py
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from attnmel.io import atomic_write_text  # noqa: E402

DEFAULT_OUT = HERE / "results"


def run(cmd: list[str], capture: bool = False) -> tuple[int, float, str, str]:
    """Run ``cmd`` from the repository root; returns (exit code, seconds, stdout, stderr) (streams unless ``capture``)."""
    print("==> " + " ".join(cmd), flush=True)
    start = time.perf_counter()
    if capture:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        sys.stdout.write(proc.stdout)
        sys.stderr.write(proc.stderr)
        return proc.returncode, time.perf_counter() - start, proc.stdout, proc.stderr
    proc = subprocess.run(cmd, cwd=ROOT)
    return proc.returncode, time.perf_counter() - start, "", ""


def supported_flags(script: Path) -> set[str]:
    """The ``--flags`` a script's ``--help`` lists, so only options it knows are passed on."""
    proc = subprocess.run([sys.executable, str(script), "--help"], cwd=ROOT, capture_output=True, text=True)
    return set(re.findall(r"(--[a-z][a-z0-9-]*)", proc.stdout)) if proc.returncode == 0 else set()


def demote_headings(markdown: str) -> str:
    """One level deeper for every heading, so a report nests under a section of the summary."""
    return re.sub(r"^(#+) ", r"#\1 ", markdown, flags=re.MULTILINE)


def json_to_markdown(data: Any) -> str:
    """A readable rendering of a benchmark's JSON: scalars as a list, lists of records as tables."""
    if not isinstance(data, dict):
        return "```json\n" + json.dumps(data, indent=2) + "\n```\n"
    bullets, tables = [], []
    for key, value in data.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            columns = list(dict.fromkeys(k for record in value for k in record))
            columns.sort(key=lambda c: not isinstance(value[0].get(c), str))  # labels first, then figures
            table = [f"| {' | '.join(columns)} |", "|" + "---|" * len(columns)]
            table += ["| " + " | ".join(_cell(record.get(c)) for c in columns) + " |" for record in value]
            tables.append(f"{key}:\n\n" + "\n".join(table))
        elif isinstance(value, dict):
            bullets.append(f"- {key}: " + ", ".join(f"{k} {_cell(v)}" for k, v in value.items()))
        else:
            bullets.append(f"- {key}: {_cell(value)}")
    return "\n".join(bullets) + "\n\n" + "\n\n".join(tables) + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "—" if value is None else str(value).replace("|", "\\|")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fast check that every benchmark works")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument(
        "--out-dir", type=Path, default=None, help=f"default {DEFAULT_OUT} (quick: .../quick)"
    )
    parser.add_argument("--skip-data", action="store_true", help="do not run bench_data.py")
    args = parser.parse_args(argv)
    out_dir = (args.out_dir or (DEFAULT_OUT / "quick" if args.quick else DEFAULT_OUT)).resolve()
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")

    train_cmd = [
        sys.executable,
        str(HERE / "bench_train.py"),
        "--device",
        args.device,
        "--out-dir",
        str(out_dir),
    ]
    train_cmd += (["--quick"] if args.quick else []) + extra
    train_rc, train_s, _, _ = run(train_cmd)
    train_md = out_dir / "bench_train.md"
    sections = [f"# Benchmark summary\n\nStarted {started}.\n"]
    sections.append("## Training and inference speed\n")
    sections.append(f"`{_shown(train_cmd)}`: exit code {train_rc}, {train_s / 60:.1f} min.\n")
    if train_md.is_file() and train_rc in (0, 1):
        sections.append(demote_headings(demote_headings(train_md.read_text(encoding="utf-8"))))
    else:
        sections.append(f"bench_train.py did not produce {train_md.name}; see its output above.\n")

    data_script = HERE / "bench_data.py"
    data_rc = 0
    sections.append("## Data pipeline\n")
    if args.skip_data:
        sections.append("Skipped (--skip-data).\n")
    elif not data_script.is_file():
        sections.append(f"Skipped: {data_script.relative_to(ROOT)} is not there.\n")
    else:
        data_json = out_dir / "data.json"
        flags = supported_flags(data_script)
        data_cmd = [sys.executable, str(data_script), "--out", str(data_json)]
        data_cmd += ["--quick"] if args.quick and "--quick" in flags else []
        data_cmd += ["--device", args.device] if "--device" in flags else []
        data_json.unlink(missing_ok=True)
        data_rc, data_s, _, data_err = run(data_cmd, capture=True)
        sections.append(f"`{_shown(data_cmd)}`: exit code {data_rc}, {data_s / 60:.1f} min.\n")
        if data_rc == 0 and data_json.is_file():
            sections.append(json_to_markdown(json.loads(data_json.read_text(encoding="utf-8"))))
        else:
            lines = [line for line in data_err.splitlines() if line.strip()]
            why = lines[-1] if lines else "no message"
            verdict = "Skipped (bad arguments or missing data)" if data_rc == 2 else "Failed"
            sections.append(f"{verdict}: {why}\n")
            data_rc = 0 if data_rc == 2 else data_rc

    sections.append("## bf16 vs fp32 accuracy\n")
    sections += precision_sections(out_dir)

    summary = atomic_write_text(out_dir / "SUMMARY.md", "\n".join(sections))
    print(f"==> wrote {summary}")
    return 1 if train_rc != 0 or data_rc != 0 else 0


def precision_sections(out_dir: Path) -> list[str]:
    """The reports of earlier ``bench_precision.py`` runs in ``out_dir`` (about 45 min each: not rerun here)."""
    reports = sorted(out_dir.glob("precision-*.md"))
    if not reports:
        return [
            "Not measured yet: `python benchmarks/bench_precision.py --preset smoke --seeds 0 1 2 3` "
            "(about 45 minutes on 2 CPU cores) writes the report that appears here.\n"
        ]
    sections = []
    for report in reports:
        when = dt.datetime.fromtimestamp(report.stat().st_mtime, dt.UTC).isoformat(timespec="minutes")
        sections.append(f"From `{report.name}`, written {when} by `benchmarks/bench_precision.py`:\n")
        sections.append(demote_headings(demote_headings(report.read_text(encoding="utf-8"))))
    return sections


def _shown(cmd: list[str]) -> str:
    """The command as a user would type it from the repository root."""
    shown = ["python" if c == sys.executable else c for c in cmd]
    return " ".join(str(Path(c).relative_to(ROOT)) if c.startswith(str(ROOT)) else c for c in shown)


if __name__ == "__main__":
    sys.exit(main())
