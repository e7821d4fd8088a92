"""Every benchmark in one run, and one summary: ``python -m perf.all --out DIR [--quick]``.

Runs each ``perf/bench_*.py`` and ``perf/tick_to_trade.py``, one after the other
(never two at once: they would measure each other), each in its own process
with the same ``--out DIR`` (and ``--quick``), then writes ``DIR/summary.json``
in the format of every other result file (DESIGN.md, "Benchmark results"):
every figure of every benchmark with its target and ``met`` flag, plus
``source`` (the benchmark that measured it). A benchmark that fails, times out
or writes nothing does not stop the others: it is listed under ``runs`` with
its status and the tail of its stderr, and the exit status is 1. Each
benchmark's output goes to ``DIR/logs/<module>.log``.

A result file belongs to a run when the run created or rewrote it (``benchmark``
and ``figures`` keys; its modification time or size differs from before the
run), so stale files from an earlier run in the same directory are never
reported as new.

Options: ``--only NAME`` (repeatable: ``bench_book``, ``book`` or
``tick_to_trade``), ``--skip NAME``, ``--timeout SECONDS`` per benchmark,
``--bench-dir DIR`` (run the scripts of another directory, for tests).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from perf._common import DEFAULT_OUT, now_iso, write_result

PERF_DIR = Path(__file__).resolve().parent
REPO = PERF_DIR.parent
HARNESS = "tick_to_trade"
TIMEOUT_S = 3600.0
QUICK_TIMEOUT_S = 900.0

__all__ = ["discover", "main", "run_all", "summarize"]


def discover(bench_dir: Path = PERF_DIR) -> list[Path]:
    """The benchmark scripts of a directory: ``bench_*.py`` sorted, then the harness."""
    found = sorted(bench_dir.glob("bench_*.py"))
    harness = bench_dir / f"{HARNESS}.py"
    if harness.is_file():
        found.append(harness)
    return found


def _short(stem: str) -> str:
    return stem[len("bench_"):] if stem.startswith("bench_") else stem


def _selected(path: Path, only: list[str], skip: list[str]) -> bool:
    names = {path.stem, _short(path.stem)}
    if only and not names & set(only):
        return False
    return not names & set(skip)


def _command(path: Path, out: Path, quick: bool) -> list[str]:
    if path.parent.resolve() == PERF_DIR:
        cmd = [sys.executable, "-m", f"perf.{path.stem}"]
    else:
        cmd = [sys.executable, str(path)]
    cmd += ["--out", str(out)]
    if quick:
        cmd.append("--quick")
    return cmd


def _stamps(out: Path) -> dict[str, tuple[int, int]]:
    """(mtime ns, size) of every JSON file in ``out``."""
    stamps = {}
    for p in out.glob("*.json"):
        try:
            st = p.stat()
        except OSError:
            continue
        stamps[p.name] = (st.st_mtime_ns, st.st_size)
    return stamps


def _results_since(out: Path, before: dict[str, tuple[int, int]]
                   ) -> list[tuple[Path, dict[str, Any]]]:
    """Result files (benchmark + figures) in ``out`` created or rewritten since ``before``."""
    found = []
    now = _stamps(out)
    for p in sorted(out.glob("*.json")):
        if p.name == "summary.json" or p.name not in now or now[p.name] == before.get(p.name):
            continue
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and "benchmark" in doc and isinstance(doc.get("figures"), list):
            found.append((p, doc))
    return found


def _tail(path: Path, n: int = 25) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def run_one(path: Path, out: Path, quick: bool, timeout_s: float) -> dict[str, Any]:
    """Run one benchmark script; returns its run record (status, seconds, results)."""
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{path.stem}.log"
    cmd = _command(path, out, quick)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    before = _stamps(out)
    t0 = time.perf_counter()
    status = "ok"
    rc: int | None = None
    with open(log, "w", encoding="utf-8") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        try:
            proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                  timeout=timeout_s, check=False)
            rc = proc.returncode
            if rc != 0:
                status = "failed"
        except subprocess.TimeoutExpired:
            status = "timeout"
    seconds = time.perf_counter() - t0
    results = _results_since(out, before)
    if status == "ok" and not results:
        status = "no_result"
    rec: dict[str, Any] = {
        "module": path.stem,
        "status": status,
        "returncode": rc,
        "seconds": round(seconds, 2),
        "results": [p.name for p, _ in results],
        "log": str(log.relative_to(out)),
    }
    if status != "ok":
        rec["output_tail"] = _tail(log)
    rec["_docs"] = [doc for _, doc in results]
    return rec


def summarize(runs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Every figure of every result, with its source; and the counts (met, missed, ...)."""
    figures: list[dict[str, Any]] = []
    for run in runs:
        if run["status"] not in ("ok", "failed", "timeout"):
            continue
        for doc in run.get("_docs", []):
            for f in doc.get("figures", []):
                if not isinstance(f, dict) or "name" not in f:
                    continue
                g = dict(f)
                g["source"] = str(doc.get("benchmark", run["module"]))
                g["module"] = run["module"]
                figures.append(g)
    counts = {
        "benchmarks": len(runs),
        "benchmarks_ok": sum(1 for r in runs if r["status"] == "ok"),
        "figures": len(figures),
        "met": sum(1 for f in figures if f.get("met") is True),
        "missed": sum(1 for f in figures if f.get("met") is False),
        "no_target": sum(1 for f in figures if f.get("met") is None),
    }
    return figures, counts


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"
    return str(v)


def table(figures: list[dict[str, Any]]) -> str:
    rows = [("figure", "value", "unit", "target", "met", "source")]
    for f in figures:
        met = {True: "yes", False: "NO", None: "-"}[f.get("met")]
        rows.append((f["name"], _fmt(f.get("value")), str(f.get("unit", "")),
                     _fmt(f.get("target")), met, f["source"]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))
                     for r in rows)


def run_all(out: Path, quick: bool = False, only: list[str] | None = None,
            skip: list[str] | None = None, timeout_s: float | None = None,
            bench_dir: Path = PERF_DIR, echo: bool = True) -> tuple[Path, list[dict[str, Any]]]:
    out.mkdir(parents=True, exist_ok=True)
    started = now_iso()
    timeout = timeout_s or (QUICK_TIMEOUT_S if quick else TIMEOUT_S)
    runs = []
    for path in discover(bench_dir):
        if not _selected(path, only or [], skip or []):
            continue
        if echo:
            print(f"[perf.all] {path.stem} ...", flush=True)
        rec = run_one(path, out, quick, timeout)
        if echo:
            print(f"[perf.all] {path.stem}: {rec['status']} in {rec['seconds']} s "
                  f"-> {', '.join(rec['results']) or 'no result'}", flush=True)
        runs.append(rec)
    figures, counts = summarize(runs)
    for r in runs:
        r.pop("_docs", None)
    path = write_result("summary", figures, out, started=started, quick=quick, runs=runs,
                        counts=counts)
    return path, runs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--out", default=str(DEFAULT_OUT), help="directory for the results")
    p.add_argument("--quick", action="store_true", help="every benchmark in quick mode")
    p.add_argument("--only", action="append", default=[], metavar="NAME")
    p.add_argument("--skip", action="append", default=[], metavar="NAME")
    p.add_argument("--timeout", type=float, default=None, help="seconds per benchmark")
    p.add_argument("--bench-dir", default=str(PERF_DIR), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    out = Path(args.out)
    path, runs = run_all(out, args.quick, args.only, args.skip, args.timeout,
                         Path(args.bench_dir))
    doc = json.loads(path.read_text(encoding="utf-8"))
    print(table(doc["figures"]))
    bad = [r for r in runs if r["status"] != "ok"]
    for r in bad:
        print(f"[perf.all] {r['module']}: {r['status']} (see {out / r['log']})")
    c = doc["counts"]
    print(f"[perf.all] {c['benchmarks_ok']}/{c['benchmarks']} benchmarks ok; "
          f"{c['met']} figures met, {c['missed']} missed, {c['no_target']} without target")
    print(path)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
