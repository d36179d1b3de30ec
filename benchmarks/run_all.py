"""Run every benchmark of the project, then rewrite the summary table of benchmarks/README.md.

Each `benchmarks/bench_*.py` writes `benchmarks/results/<name>.json` with a `targets` list of rows
{metric, baseline, measured, target, ratio, met}; this script collects those rows into the table
between the SUMMARY markers of benchmarks/README.md.

    python benchmarks/run_all.py            # run all, then rewrite the table
    python benchmarks/run_all.py --table    # only rewrite the table from the committed JSON
    python benchmarks/run_all.py --only bench_export
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
README = HERE / "README.md"
BEGIN, END = "<!-- SUMMARY:BEGIN -->", "<!-- SUMMARY:END -->"


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _target_rows(data: dict) -> list[dict]:
    """`targets` rows, or the `summary.targets` mapping {metric: {target, value, met}} some benchmarks write."""
    if isinstance(data.get("targets"), list):
        return data["targets"]
    nested = (data.get("summary") or {}).get("targets") or data.get("targets") or {}
    return [{"metric": k, "measured": v.get("value"), "target": v.get("target"), "met": v.get("met"),
             "baseline": v.get("baseline"), "ratio": v.get("ratio")} for k, v in nested.items()]


def summary_table() -> str:
    rows = []
    for path in sorted(RESULTS.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            rows.append(f"| {path.stem} | (unreadable result file) | | | | | |")
            continue
        for t in _target_rows(data):
            rows.append("| " + " | ".join([
                path.stem, t.get("metric", "?"), _fmt(t.get("baseline")), _fmt(t.get("measured")),
                _fmt(t.get("target")), _fmt(t.get("ratio")), _fmt(t.get("met"))]) + " |")
    head = ("| benchmark | metric | baseline | measured | target | ratio | met |\n"
            "|---|---|---|---|---|---|---|")
    stamp = f"_Table rewritten by `benchmarks/run_all.py` on {time.strftime('%Y-%m-%d')}._"
    return "\n".join([stamp, "", head, *rows])


def rewrite_readme() -> None:
    text = README.read_text() if README.exists() else "# Benchmarks\n"
    block = f"{BEGIN}\n{summary_table()}\n{END}"
    if BEGIN in text and END in text:
        pre, rest = text.split(BEGIN, 1)
        post = rest.split(END, 1)[1]
        text = pre + block + post
    else:
        lines = text.splitlines()
        text = "\n".join(lines[:1] + ["", "## Summary", "", block, ""] + lines[1:]) + "\n"
    tmp = README.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(README)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", action="store_true", help="only rewrite the table from existing results")
    ap.add_argument("--only", action="append", default=[], help="run only these benchmarks (file stems)")
    args = ap.parse_args()
    failed = []
    if not args.table:
        for script in sorted(HERE.glob("bench_*.py")):
            if args.only and script.stem not in args.only:
                continue
            print(f"== {script.stem}", flush=True)
            t0 = time.time()
            r = subprocess.run([sys.executable, str(script)], cwd=HERE.parent)
            print(f"== {script.stem}: exit {r.returncode} after {time.time() - t0:.0f} s", flush=True)
            if r.returncode != 0:
                failed.append(script.stem)
    rewrite_readme()
    print(summary_table())
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
