"""The ``nanoarb`` command line.

Each subcommand lives in ``daemon/commands/<name>.py`` and defines
``HELP: str``, ``add_arguments(parser)`` and ``run(args) -> int``. Modules are
imported lazily, only for the command being run, so ``nanoarb decode`` does not
pay for onnxruntime and ``nanoarb --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

# name -> module under daemon.commands; a module not yet written is simply not offered.
COMMANDS: tuple[str, ...] = (
    "decode",
    "book",
    "train",
    "venue",
    "run",
    "paper",
    "replay",
    "demo",
    "ctl",
)


def _load(name: str) -> Any:
    try:
        return importlib.import_module(f"daemon.commands.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"daemon.commands.{name}":
            return None
        raise


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nanoarb", description="Low-latency CME MDP 3.0 / iLink 3 trading daemon."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        if only is not None and name != only:
            # cheap placeholder so --help lists every command without importing it
            sub.add_parser(name)
            continue
        mod = _load(name)
        if mod is None:
            continue
        doc = getattr(mod, "HELP", None)
        p = sub.add_parser(name, help=doc, description=doc)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in args_list if not a.startswith("-")), None)
    only = first if first in COMMANDS else None
    parser = build_parser(only)
    args = parser.parse_args(args_list)
    run = getattr(args, "_run", None)
    if run is None:
        parser.print_help()
        return 2
    try:
        return int(run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
