"""`nanoarb run --config FILE`: the live daemon (CME market data, iLink 3 orders)."""

from __future__ import annotations

import argparse

HELP = ("Run the trading daemon live: CME MDP 3.0 market data, orders through iLink 3 "
        "(mode = \"live\" in the config; credentials from the environment).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from daemon.launch import add_run_arguments

    add_run_arguments(p)


def run(args: argparse.Namespace) -> int:
    from daemon.launch import launch

    return launch(args, "live")
