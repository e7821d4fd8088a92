"""Real multicast in a private network namespace: A/B arbitration, gaps, snapshot recovery.

The test re-executes tests/helpers/netns_feed_worker.py inside ``unshare -n``
(loopback up, 224.0.0.0/4 routed to it), so no datagram leaves the test. The
worker runs the production path twice, clean and impaired (loss on feed A,
loss on both feeds, duplicates, reordering, a ChannelReset), with a
publisher process sending the definition loop, feeds A/B and the snapshot loop.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.netns, pytest.mark.slow]

SPEC = {
    "seed": 20240611,
    "n_packets": 400,
    "reset_at": 220,
    "snap_every": 25,
    "loss_a": 0.06,
    "loss_b": 0.04,
    "dup": 0.03,
    "reorder": 0.05,
    "lost_both": [60, 61, 150, 300],
    "pace_us": 150,
    "definition_loops": 3,
    "tail_s": 5.0,
    "timeout_s": 60.0,
    "timestamps": True,
}


def _unshare_ok() -> str | None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare or ip not installed"
    r = subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return f"unshare -n not permitted here: {r.stderr.strip()}"
    return None


@pytest.fixture(scope="module")
def result() -> dict:
    why = _unshare_ok()
    if why:
        pytest.skip(why)
    cmd = (f"ip link set lo up && ip route add 224.0.0.0/4 dev lo && "
           f"exec {sys.executable} -m tests.helpers.netns_feed_worker scenario "
           f"'{json.dumps(SPEC)}'")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run(["unshare", "-n", "sh", "-c", cmd], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_definitions_loaded_from_the_loop(result):
    for run in ("clean", "impaired"):
        assert result[run]["instruments"] == 4
        assert result[run]["definitions"] >= 4


def test_every_sequence_once_in_order(result):
    for run in ("clean", "impaired"):
        r = result[run]
        c = r["counters"]
        assert r["next_seq"] == result["last_seq"] + 1
        first = 1
        # each sequence either delivered once or declared lost, none twice
        assert c["delivered"] + c["gap_packets"] == r["next_seq"] - first
        assert c["packets_a"] + c["packets_b"] >= c["delivered"]


def test_clean_run_has_no_gap(result):
    c = result["clean"]["counters"]
    assert c["gaps"] == 0 and c["late"] == 0
    assert c["duplicates"] >= result["last_seq"] - 2  # B copies (the last may come after the stop)
    assert c["recovered"] == 4  # the late join: each instrument from its snapshot


def test_impaired_run_saw_every_impairment(result):
    c = result["impaired"]["counters"]
    assert c["duplicates"] > result["last_seq"] // 2  # the other feed's copies and dups
    assert c["held"] > 0  # loss on one feed / reordering: waited for the other copy
    assert c["gaps"] >= 3  # lost on both feeds
    assert c["gap_packets"] >= 3
    assert c["channel_resets"] == 1
    assert c["recovered"] > 4  # late join + gaps recovered from the snapshot loop
    assert c["snapshots_applied"] >= c["recovered"]


def test_recovered_and_left_the_snapshot_feed(result):
    for run in ("clean", "impaired"):
        r = result[run]
        assert r["pending"] == 0
        assert all(s == 1 for s in r["status"].values()), r["status"]  # INST_OK
        assert r["joined_snapshot_after"] is False


def test_books_equal_run_without_loss_and_publisher(result):
    assert result["clean"]["books"] == result["truth"]
    assert result["impaired"]["books"] == result["clean"]["books"]
    assert any(b["bid"] and b["ask"] for b in result["truth"].values())
    assert result["impaired"]["market"]["violations"] == 0
