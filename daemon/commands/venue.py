"""``nanoarb venue --config FILE [--seconds N] [--record PCAP]``: the exchange simulator.

Publishes MDP 3.0 (incremental feeds A and B, snapshot loop, definition loop) and
accepts iLink 3 sessions, as CME does, from a venue config (``configs/venue.toml``).
Prints one JSON line on stdout when ready (the order-entry and control ports it
got), one JSON summary line at exit. Stops cleanly on SIGTERM/SIGINT (or after
``--seconds``): sessions closed, packets flushed, the latency record written.
With ``--record PCAP`` it serves nothing: the market runs offline for ``--seconds``
of market time and is written to a capture (``adapters.venue.record``).
"""

from __future__ import annotations

import argparse
import json
import sys

HELP = ("Run the exchange simulator: MDP 3.0 out (feeds A/B, snapshot and definition "
        "loops), iLink 3 in, background order flow, fault injection.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, metavar="FILE", help="venue TOML config")
    p.add_argument("--seconds", type=float, default=None, metavar="N",
                   help="stop after N seconds (default: until SIGTERM/SIGINT)")
    p.add_argument("--latency-file", default=None, metavar="PATH",
                   help="write the latency record here at exit (.npy or .jsonl); "
                   "overrides venue.latency_file")
    p.add_argument("--record", default=None, metavar="PCAP",
                   help="do not serve: run the market offline for --seconds of market time "
                   "(default 60) and write everything it publishes to PCAP (deterministic)")


def run(args: argparse.Namespace) -> int:
    import msgspec

    from adapters.venue.config import ConfigError, load_venue_config
    from adapters.venue.venue import Venue

    try:
        cfg = load_venue_config(args.config)
    except ConfigError as exc:
        print(f"nanoarb venue: {exc}", file=sys.stderr)
        return 2
    if args.latency_file is not None:
        if not args.latency_file.endswith((".npy", ".jsonl")):
            print("nanoarb venue: --latency-file must end in .npy or .jsonl", file=sys.stderr)
            return 2
        cfg = msgspec.structs.replace(
            cfg, venue=msgspec.structs.replace(cfg.venue, latency_file=args.latency_file))
    if args.seconds is not None and args.seconds <= 0:
        print("nanoarb venue: --seconds must be > 0", file=sys.stderr)
        return 2
    if args.record is not None:
        from adapters.venue.record import record_capture

        try:
            summary = record_capture(cfg, args.record, args.seconds or 60.0)
        except (OSError, ValueError) as exc:
            print(f"nanoarb venue: {exc}", file=sys.stderr)
            return 2
        print(json.dumps(summary, default=str), flush=True)
        return 0
    try:
        venue = Venue(cfg)
        venue.install_signal_handlers()
        ready = venue.start()
    except (RuntimeError, OSError, ValueError) as exc:
        print(f"nanoarb venue: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(ready), flush=True)
    summary = venue.run(args.seconds)
    print(json.dumps({"event": "stopped", **summary}, default=str), flush=True)
    return 0
