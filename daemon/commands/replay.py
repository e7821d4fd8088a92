"""`nanoarb replay --config FILE DATA...`: backtest through the simulated venue."""

from __future__ import annotations

import argparse
import sys

HELP = ("Backtest: replay captures (pcap/pcapng), DBN files or synthetic:N through the "
        "daemon's tick and the simulated venue, as fast as possible; writes a JSON report.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", nargs="+", help="capture files, DBN files, or synthetic:N")
    p.add_argument("--config", default="", help="daemon config (default: the demo config)")
    p.add_argument("--report", default="-", help="JSON report path ('-': stdout)")
    p.add_argument("--timings", action="store_true",
                   help="add wall-clock figures (not deterministic) under 'timings'")
    p.add_argument("--plot", default="", metavar="PNG",
                   help="also plot equity (drawdown shaded) and inventory over time "
                   "(needs matplotlib: pip install 'nanoarb[perf]')")
    p.add_argument("--start-active", action="store_true",
                   help="trade from the first event (default: as risk.start_active says)")


def run(args: argparse.Namespace) -> int:
    import msgspec

    from daemon.config import ConfigError, demo_config, load_config

    try:
        cfg = load_config(args.config) if args.config else demo_config()
        if args.start_active:
            cfg = msgspec.structs.replace(
                cfg, risk=msgspec.structs.replace(cfg.risk, start_active=True))
        cfg = msgspec.structs.replace(cfg, mode="replay", metrics=msgspec.structs.replace(
            cfg.metrics, enabled=False))
        from daemon.numba_cache import use_source_cache

        use_source_cache(cfg.process.numba_cache_dir)
        from daemon.process import run_daemon
        from daemon.report import dumps_report, replay_report, timings

        result = run_daemon(cfg, mode="replay", config_path=args.config or None,
                            data=args.data, control=False, journal="", quiet=True)
    except ConfigError as exc:
        print(f"nanoarb replay: {exc}", file=sys.stderr)
        return 2
    report = replay_report(result, list(args.data))
    if args.plot:
        try:
            from daemon.plots import equity_plot
            from daemon.report import equity_curve, fills_of

            times, equity, pos = equity_curve(result, fills_of(result))
            equity_plot(times, equity, pos, args.plot, title="nanoarb replay",
                        position_labels=result.engine.symbols)
        except ImportError:
            print("nanoarb replay: --plot needs matplotlib (pip install 'nanoarb[perf]')",
                  file=sys.stderr)
            return 2
    if args.timings:
        report["timings"] = timings(result)
    text = dumps_report(report)
    if args.report == "-":
        sys.stdout.write(text)
    else:
        with open(args.report, "w", encoding="utf-8") as f:
            f.write(text)
    return 0
