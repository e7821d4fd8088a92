"""`nanoarb demo [--seconds N]`: the daemon trading against the bundled exchange simulator."""

from __future__ import annotations

import argparse
import sys

HELP = ("Start the exchange simulator and the daemon on 127.0.0.1 with the bundled default "
        "config and model, trade for N seconds, print a summary.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=float, default=10.0, help="trading time (default 10)")
    p.add_argument("--seed", type=int, default=7, help="seed of the venue's order flow")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    import json
    import os
    import tempfile

    import msgspec

    from daemon.numba_cache import use_source_cache

    use_source_cache()  # before numba is imported; the venue process inherits it
    from daemon.demo import DemoVenue, daemon_config, demo_credentials
    from daemon.process import run_daemon
    from daemon.report import demo_summary, format_summary

    if args.seconds <= 0:
        print("nanoarb demo: --seconds must be > 0", file=sys.stderr)
        return 2
    creds = demo_credentials()
    os.environ.update(creds)  # the daemon reads the session key from its environment
    with tempfile.TemporaryDirectory(prefix="nanoarb-demo-") as tmp:
        venue = DemoVenue(tmp, env=dict(os.environ), seed=args.seed)
        print("nanoarb demo: starting the exchange simulator (first run compiles its "
              "kernels: up to a few minutes)", file=sys.stderr, flush=True)
        try:
            venue.launch()
            from daemon.engine import precompile

            precompile()  # the daemon's kernels, while the venue compiles its own
            venue.wait_ready()
            cfg = daemon_config(venue)
            cfg = msgspec.structs.replace(cfg, control=msgspec.structs.replace(
                cfg.control, socket=os.path.join(tmp, "control.sock")))
            result = run_daemon(cfg, mode="demo", control=True, journal="",
                                max_seconds=args.seconds)
        finally:
            venue.stop()
    summary = demo_summary(result)
    summary["venue"] = {k: venue.summary.get(k) for k in ("engine", "orders")}
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True, default=str))
    else:
        print(format_summary(summary))
    return 0 if result.loop.stopped_clean else 1
