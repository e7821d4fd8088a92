"""``nanoarb decode CAPTURE... [--schema XML] [--json]``: print the SBE messages of captures.

UDP datagrams are MDP 3.0 packets; TCP streams are reassembled and framed as
MDP 3.0 TCP (0xCAFE) or iLink 3 (SOFH). Each message is decoded with the
bundled schema chosen from its SBE header (schemaId, version, templateId), or
with ``--schema`` for messages of that schema's id. ``--json`` prints one JSON
object per message per line (issue 2 item 6); otherwise one readable line.
Undecodable bytes are reported on stderr and make the exit status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import IO, Any

HELP = "Decode CME MDP 3.0 / iLink 3 SBE messages from pcap or pcapng captures."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("captures", nargs="+", metavar="CAPTURE", help="pcap or pcapng file")
    parser.add_argument(
        "--schema",
        metavar="XML",
        help="SBE schema XML to use for messages of its schema id "
        "(default: the bundled schema matching each message header)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per message per line")


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return value.hex()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _utc(ns: int | None) -> str:
    if ns is None:
        return "-"
    sec, frac = divmod(ns, 1_000_000_000)
    try:
        stamp = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return str(ns)
    return f"{stamp}.{frac:09d}Z"


def _compact(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + " ".join(f"{k}={_compact(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_compact(v) for v in value) + "]"
    if isinstance(value, bytes | bytearray):
        return value.hex()
    if isinstance(value, str):
        return repr(value)
    return "null" if value is None else str(value)


def _text_line(rec: dict[str, Any]) -> str:
    head = (
        f"#{rec['frame']} {rec['src']} > {rec['dst']}"
        + (f" seq={rec['seq']}" if rec["seq"] is not None else "")
        + (f" {_utc(rec['sending_time'])}" if rec["sending_time"] is not None else "")
        + f" {rec['name']} [t{rec['template_id']} s{rec['schema_id']} v{rec['version']}]"
    )
    parts = [head]
    parts += [f"{k}={_compact(v)}" for k, v in rec["fields"].items()]
    parts += [f"{k}({len(v)})={_compact(v)}" for k, v in rec["groups"].items()]
    return " ".join(parts)


class _Decoder:
    def __init__(self, out: IO[str], err: IO[str], as_json: bool, schema: Any) -> None:
        from core.sbe import codec

        self.codec = codec
        self.out = out
        self.err = err
        self.as_json = as_json
        self.schema = schema
        self.errors = 0
        self.messages = 0

    def _schema_for(self, buf: bytes, pos: int) -> Any:
        if self.schema is None:
            return None
        try:
            _, _, schema_id, _ = self.codec.peek_header(buf, pos, self.schema.header)
        except self.codec.DecodeError:
            return None
        return self.schema if schema_id == self.schema.id else None

    def _emit(self, frame: int, src: str, dst: str, seq: Any, sent: Any, msg: dict) -> None:
        rec = {
            "frame": frame,
            "src": src,
            "dst": dst,
            "seq": seq,
            "sending_time": sent,
            "template_id": msg["template_id"],
            "schema_id": msg["schema_id"],
            "version": msg["version"],
            "name": msg["name"],
            "fields": msg["fields"],
            "groups": msg["groups"],
        }
        self.messages += 1
        if self.as_json:
            self.out.write(json.dumps(rec, default=_json_default) + "\n")
        else:
            self.out.write(_text_line(rec) + "\n")

    def _error(self, path: str, frame: int, exc: Exception) -> None:
        self.errors += 1
        self.err.write(f"{path}: frame {frame}: {exc}\n")

    def packet(self, path: str, frame: int, src: str, dst: str, data: bytes) -> None:
        codec = self.codec
        try:
            header, messages = codec.iter_packet_messages(data)
            for pos, size in messages:
                try:
                    msg, _ = codec.decode_message(
                        data, pos + 2, pos + size, schema=self._schema_for(data, pos + 2)
                    )
                except codec.DecodeError as exc:
                    self._error(path, frame, exc)
                    continue
                self._emit(frame, src, dst, header.msg_seq_num, header.sending_time, msg)
        except codec.DecodeError as exc:
            self._error(path, frame, exc)

    def message(self, path: str, frame: int, src: str, dst: str, data: bytes) -> None:
        try:
            msg, _ = self.codec.decode_message(data, 0, schema=self._schema_for(data, 0))
        except self.codec.DecodeError as exc:
            self._error(path, frame, exc)
            return
        self._emit(frame, src, dst, None, None, msg)


def run(args: argparse.Namespace) -> int:
    from adapters.capture import CaptureError, CaptureStats, read_capture
    from core.sbe.schema import SchemaError, load_schema

    schema = None
    if args.schema:
        try:
            schema = load_schema(args.schema)
        except (OSError, SchemaError) as exc:
            sys.stderr.write(f"nanoarb decode: cannot load schema {args.schema}: {exc}\n")
            return 2
    dec = _Decoder(sys.stdout, sys.stderr, args.json, schema)
    failed = False
    try:
        for path in args.captures:
            stats = CaptureStats()
            try:
                for rec in read_capture(path, stats):
                    if rec.protocol == "ilink3":
                        dec.message(path, rec.frame, rec.src, rec.dst, rec.payload)
                    else:
                        dec.packet(path, rec.frame, rec.src, rec.dst, rec.payload)
            except (OSError, CaptureError) as exc:
                sys.stderr.write(f"nanoarb decode: {path}: {exc}\n")
                failed = True
                continue
            if stats.malformed_total:
                failed = True
                sys.stderr.write(
                    f"{path}: {stats.malformed_total} malformed frames skipped: "
                    f"{dict(stats.malformed)}\n"
                )
        sys.stdout.flush()
    except BrokenPipeError:  # `nanoarb decode x.pcap | head`
        sys.stderr.close()
        return 0
    return 1 if failed or dec.errors else 0
