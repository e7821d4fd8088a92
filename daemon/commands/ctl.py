"""`nanoarb ctl status|halt|resume|reload`: talk to a running daemon over its control socket."""

from __future__ import annotations

import argparse
import json
import socket

HELP = "Send status/halt/resume/reload to a running daemon over its Unix control socket."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("command", choices=["status", "halt", "resume", "reload"])
    p.add_argument("--socket", default="/run/nanoarb/control.sock", help="control socket path")
    p.add_argument("--timeout", type=float, default=5.0)


def request(path: str, command: str, timeout: float = 5.0) -> dict[str, object]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(command.encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    reply: dict[str, object] = json.loads(data.decode() or "{}")
    return reply


def run(args: argparse.Namespace) -> int:
    try:
        reply = request(args.socket, args.command, args.timeout)
    except OSError as exc:
        print(f"nanoarb ctl: cannot reach {args.socket}: {exc.strerror or exc}")
        return 2
    print(json.dumps(reply, indent=2, sort_keys=True))
    return 0 if reply.get("ok") else 1
