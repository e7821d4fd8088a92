"""``nanoarb train DATA... --out model.onnx``: fit a model on captures or synthetic data.

DATA is a pcap/pcapng capture of MDP 3.0 traffic (UDP feeds or MDP TCP) or
``synthetic:N`` for N events of the seeded synthetic market (``core.synthetic``).
Features come from ``core.features.replay_features``, the same kernels the live
daemon runs; labels are the mid move at each horizon (completed events of the
instrument) as down / flat / up. The ONNX model is written to ``--out`` and the
JSON report (walk-forward and purged cross-validation against the class-prior
baseline, in-sample scores, data summary) beside it (``--report``).

The shipped default model is reproduced by::

    nanoarb train synthetic:200000 --seed 7 --out core/models/default.onnx
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

HELP = "Train a model (ssm or mlp) on captures or synthetic:N and export it as ONNX."


def _horizons(text: str) -> tuple[int, ...]:
    try:
        hs = tuple(int(x) for x in text.replace(",", " ").split())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"horizons must be integers: {text!r}") from exc
    if not hs or any(h <= 0 for h in hs) or list(hs) != sorted(set(hs)):
        raise argparse.ArgumentTypeError("horizons must be increasing positive integers")
    return hs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", nargs="+", metavar="DATA",
                        help="capture file (pcap/pcapng) or synthetic:N")
    parser.add_argument("--out", required=True, help="ONNX model to write")
    parser.add_argument("--report", help="JSON report to write (default: --out with .json)")
    parser.add_argument("--kind", choices=("ssm", "mlp"), default="ssm",
                        help="ssm: diagonal linear state-space model (default); mlp: stateless MLP")
    parser.add_argument("--horizons", type=_horizons, default=None,
                        help="label horizons in completed events, e.g. '10,30,100' (default)")
    parser.add_argument("--flat-ticks", type=float, default=None,
                        help="|move| <= this many ticks is 'flat' (default 0.25)")
    parser.add_argument("--seed", type=int, default=7, help="seed of synthetic data and fitting")
    parser.add_argument("--folds", type=int, default=4, help="cross-validation folds (default 4)")
    parser.add_argument("--no-cv", action="store_true", help="skip cross-validation")


def load_source(spec: str, seed: int) -> tuple[dict[str, Any], dict[int, int], dict[int, int],
                                               dict[str, Any]]:
    """Replayed features, tick sizes, depths and a summary of one DATA argument."""
    import numpy as np

    from core import synthetic
    from core.features import replay_features

    n = synthetic.parse_spec(spec)
    if n is not None:
        m = synthetic.generate(n, seed=seed)
        rep = replay_features(m.events, m.tick_size, m.depth)
        info = {"source": spec, "seed": seed, "events": len(m.events),
                "instruments": {str(k): v for k, v in m.tick_size.items()}}
        return rep, dict(m.tick_size), dict(m.depth), info
    events, ticks, depth, info = _capture_events(spec)
    rep = replay_features(events, ticks or None, depth or None)
    missing = set(np.unique(rep["security_id"]).tolist()) - set(ticks)
    ticks.update(_infer_ticks(events, missing))
    return rep, ticks, depth, info


def _capture_events(path: str) -> tuple[Any, dict[int, int], dict[int, int], dict[str, Any]]:
    import numpy as np

    from adapters.capture import CaptureStats, read_capture
    from core.sbe.instruments import InstrumentTable
    from core.sbe.mdp3 import Mdp3Decoder

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such capture file")
    dec = Mdp3Decoder()
    table = InstrumentTable()
    stats = CaptureStats()
    chunks = []
    packets = 0
    for rec in read_capture(path, stats):
        if rec.protocol not in ("udp", "mdp-tcp"):
            continue
        ev = dec.decode(rec.payload)
        packets += 1
        if len(ev):
            table.update_from_packet(rec.payload, len(rec.payload), ev)
            chunks.append(ev.copy())
    from core.types import MD_EVENT

    events = np.concatenate(chunks) if chunks else np.zeros(0, MD_EVENT)
    ticks: dict[int, int] = {}
    depth: dict[int, int] = {}
    for row in table.rows[:len(table)]:
        sid = int(row["security_id"])
        if int(row["min_price_increment"]) > 0:
            ticks[sid] = int(row["min_price_increment"])
        if int(row["outright_depth"]) > 0:
            depth[sid] = int(row["outright_depth"])
    info = {"source": path, "packets": packets, "events": len(events),
            "decoder_drops": dec.drops.tolist(), "definitions": len(table)}
    return events, ticks, depth, info


def _infer_ticks(events: Any, security_ids: set[int]) -> dict[int, int]:
    """Tick = gcd of the differences between distinct prices seen (no definition)."""
    import math

    import numpy as np

    from core.types import EV_BOOK, EV_TRADE, NULL_I64

    out = {}
    for sid in security_ids:
        sel = (events["security_id"] == sid) & np.isin(events["kind"], (EV_BOOK, EV_TRADE))
        px = np.unique(events["price"][sel])
        px = px[px != NULL_I64]
        g = 0
        for d in np.diff(px).tolist():
            g = math.gcd(g, int(d))
        out[int(sid)] = g if g > 0 else 1
    return out


def run(args: argparse.Namespace) -> int:
    from core import train as tr

    t0 = time.time()
    kw: dict[str, Any] = {"kind": args.kind, "seed": args.seed, "folds": args.folds}
    if args.horizons is not None:
        kw["horizons"] = args.horizons
    if args.flat_ticks is not None:
        kw["flat_ticks"] = args.flat_ticks
    try:
        cfg = tr.TrainConfig(**kw)
    except ValueError as exc:
        print(f"nanoarb train: {exc}", file=sys.stderr)
        return 2
    parts = []
    infos = []
    for k, spec in enumerate(args.data):
        try:
            rep, ticks, _depth, info = load_source(spec, args.seed + k)
        except (OSError, ValueError) as exc:
            print(f"nanoarb train: {spec}: {exc}", file=sys.stderr)
            return 2
        ds = tr.build_dataset(rep, ticks, cfg.horizons, cfg.flat_ticks)
        info["rows"] = len(ds)
        info["nonfinite_features"] = ds.info["nonfinite_features"]
        infos.append(info)
        parts.append(ds)
        print(f"{spec}: {info.get('events', 0)} events -> {len(ds)} feature rows", file=sys.stderr)
    ds = tr.concat_datasets(parts)
    ds.info = {"per_source": infos}
    labelled = int((ds.labels[:, 0] != tr.NO_LABEL).sum())
    if labelled < 50 * (ds.features.shape[1] + 1):
        print(f"nanoarb train: only {labelled} labelled rows: not enough to fit a model",
              file=sys.stderr)
        return 2
    command = "nanoarb train " + " ".join(shlex.quote(a) for a in sys.argv[2:]) \
        if len(sys.argv) > 2 and sys.argv[1] == "train" else None
    res = tr.train(ds, cfg, sources=list(args.data), command=command, cv=not args.no_cv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(res.onnx)
    report_path = Path(args.report) if args.report else out.with_suffix(".json")
    res.report["seconds"] = round(time.time() - t0, 1)
    report_path.write_text(json.dumps(res.report, indent=1, sort_keys=True) + "\n",
                           encoding="utf-8")
    _summary(res.report, out, report_path)
    return 0


def _summary(report: dict[str, Any], out: Path, report_path: Path) -> None:
    hs = report["model"]["horizons"]
    print(f"wrote {out} ({report['model']['kind']}, state {report['model']['state_size']}) "
          f"and {report_path}")
    for scheme, r in report.get("cross_validation", {}).items():
        for h, m in zip(hs, r["mean"], strict=True):
            if m.get("n", 0):
                print(f"  {scheme:13s} h={h:<4d} acc {m['accuracy']:.3f} (baseline "
                      f"{m['baseline_accuracy']:.3f})  log-loss {m['log_loss']:.4f} (baseline "
                      f"{m['baseline_log_loss']:.4f})")
