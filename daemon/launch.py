"""What `nanoarb run` and `nanoarb paper` share: arguments, config errors, exit codes."""

from __future__ import annotations

import argparse
import sys


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="daemon config (TOML)")
    p.add_argument("--control-socket", default=None,
                   help="override control.socket (the `nanoarb ctl` Unix socket)")
    p.add_argument("--journal", default=None, help="override journal.path")
    p.add_argument("--metrics-port", type=int, default=None, help="override metrics.port")
    p.add_argument("--seconds", type=float, default=None,
                   help="stop gracefully after this many seconds (default: run until SIGTERM)")


def launch(args: argparse.Namespace, mode: str) -> int:
    """Load the config, check it fits the mode, run the daemon; 0 on a graceful stop."""
    import msgspec

    from daemon.config import ConfigError, load_config

    try:
        cfg = load_config(args.config)
        allowed = ("live", "demo") if mode == "live" else (mode,)
        if cfg.mode not in allowed:
            raise ConfigError("mode", f"is {cfg.mode!r}; `nanoarb {_cmd(mode)}` needs "
                              f"mode = {' or '.join(map(repr, allowed))}", args.config)
        mode = cfg.mode
        from daemon.numba_cache import use_source_cache

        use_source_cache(cfg.process.numba_cache_dir)
        if args.metrics_port is not None:
            cfg = msgspec.structs.replace(cfg, metrics=msgspec.structs.replace(
                cfg.metrics, port=args.metrics_port))
        from daemon.process import run_daemon

        result = run_daemon(cfg, mode=mode, config_path=args.config, journal=args.journal,
                            control_socket=args.control_socket, max_seconds=args.seconds)
    except ConfigError as exc:
        print(f"nanoarb {_cmd(mode)}: config error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # start-up failures with a reason (control plane, ...)
        print(f"nanoarb {_cmd(mode)}: {exc}", file=sys.stderr)
        return 1
    return 0 if result.loop.stopped_clean else 1


def _cmd(mode: str) -> str:
    return {"live": "run"}.get(mode, mode)
