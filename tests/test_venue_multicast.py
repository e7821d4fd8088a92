"""The venue publishing to multicast groups, inside a private network namespace.

``unshare -n`` gives the test its own loopback (multicast routed to lo), so no
packet can leave the machine. Skipped where namespaces are not allowed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SCRIPT = r'''
import json, select, socket, time
from adapters.clock import MonotonicClock
from adapters.venue.config import parse_venue_config
from adapters.venue.venue import Venue
from core.sbe.codec import decode_packet

GROUPS = {"A": ("239.10.0.1", 14310), "B": ("239.10.1.1", 15310),
          "snapshot": ("239.10.2.1", 16310), "definition": ("239.10.3.1", 17310)}
cfg = parse_venue_config(f"""
[order_entry]
enabled = false
[control]
enabled = false
[market_data]
snapshot_interval_ms = 100
definition_interval_ms = 100
incremental_a = {{ host = "{GROUPS['A'][0]}", port = {GROUPS['A'][1]} }}
incremental_b = {{ host = "{GROUPS['B'][0]}", port = {GROUPS['B'][1]} }}
snapshot = {{ host = "{GROUPS['snapshot'][0]}", port = {GROUPS['snapshot'][1]} }}
definition = {{ host = "{GROUPS['definition'][0]}", port = {GROUPS['definition'][1]} }}
[flow]
base_rate_hz = 300.0
[[instruments]]
security_id = 5602
symbol = "ESZ5"
""")
socks = {}
for name, (group, port) in GROUPS.items():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((group, port))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                 socket.inet_aton(group) + socket.inet_aton("127.0.0.1"))
    s.setblocking(False)
    socks[name] = s
v = Venue(cfg, clock=MonotonicClock())
v.start()
got = {k: [] for k in socks}
end = time.monotonic() + 1.0
while time.monotonic() < end:
    v.step()
    for name, s in socks.items():
        while True:
            try:
                got[name].append(s.recv(65536))
            except BlockingIOError:
                break
v.stop()
templates = {k: sorted({m["template_id"] for p in ps for m in decode_packet(p)[1]})
             for k, ps in got.items()}
seqs = {k: [int.from_bytes(p[:4], "little") for p in ps] for k, ps in got.items()}
print(json.dumps({"templates": templates, "seqs": {k: v[:50] for k, v in seqs.items()},
                  "counts": {k: len(v) for k, v in got.items()}}))
'''


def _netns_ok() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    r = subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=30)
    return r.returncode == 0


@pytest.mark.skipif(not _netns_ok(), reason="no network namespaces here")
def test_feeds_reach_multicast_subscribers(tmp_path: Path) -> None:
    script = tmp_path / "mcast.py"
    script.write_text(SCRIPT)
    cmd = (f"ip link set lo up && ip route add 224.0.0.0/4 dev lo && "
           f"exec {sys.executable} {script}")
    r = subprocess.run(["unshare", "-n", "sh", "-c", cmd], cwd=REPO, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["counts"]["A"] > 20 and out["counts"]["A"] == out["counts"]["B"]
    assert out["seqs"]["A"] == list(range(1, len(out["seqs"]["A"]) + 1))
    assert out["seqs"]["A"] == out["seqs"]["B"]
    assert {30, 46}.issubset(out["templates"]["A"])
    assert out["templates"]["snapshot"] == [52]
    assert out["templates"]["definition"] == [54]
