"""`nanoarb paper --config FILE`: live market data, simulated fills, nothing leaves the process."""

from __future__ import annotations

import argparse

HELP = ("Paper trading: live MDP 3.0 market data, orders filled by the in-process simulated "
        "venue (queue-position model); no order leaves the process (mode = \"paper\").")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from daemon.launch import add_run_arguments

    add_run_arguments(p)


def run(args: argparse.Namespace) -> int:
    from daemon.launch import launch

    return launch(args, "paper")
