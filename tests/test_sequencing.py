"""core.sequencing: arbitration against a naive model, the row gate, snapshot recovery.

The arbitration kernel is checked step by step against ``RefArbiter``, a plain
Python statement of the rules (first copy wins; hold ahead; gap when every
live feed is past the missing sequence, when the wait times out, or beyond the
hold window). Recovery is checked end to end: a publisher (tests/helpers/
feedsim.py) produces real MDP packets, they arrive impaired on feeds A and B,
and the books built from the sequenced rows must equal the publisher's own.
"""

from __future__ import annotations

import random
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.sequencing import (
    CH_FIRST_SEQ,
    CH_HOLD_COUNT,
    DLV_GAP,
    DLV_HELD,
    DLV_LIVE,
    SequencedFeed,
    Sequencer,
    SequencerConfig,
)
from core.types import (
    EV_BOOK,
    EV_ORDER,
    EV_SNAPSHOT,
    FEED_A,
    FEED_B,
    FLAG_END_OF_EVENT,
    INST_OK,
    INST_RECOVERING,
    INST_STALE,
    INST_SUSPECT,
    MD_EVENT,
    ROLE_INCREMENTAL,
    ROLE_SNAPSHOT,
)
from tests.helpers.feedsim import FeedSim, RefBooks, impair


def header_only(seq: int, template: int | None = None) -> bytes:
    """A packet with just a header (and optionally one empty message of ``template``)."""
    pk = struct.pack("<IQ", seq, 0)
    if template is not None:
        pk += struct.pack("<HHHHH", 10, 0, template, 1, 9)
    return pk


# --------------------------------------------------------------------------
# Arbitration vs a naive model
# --------------------------------------------------------------------------
class RefArbiter:
    """The arbitration rules, stated naively (sets and dicts)."""

    def __init__(self, slots: int, slack: int, timeout: int, dead: int) -> None:
        self.slots, self.slack, self.timeout, self.dead = slots, slack, timeout, dead
        self.next: int | None = None
        self.held: dict[int, int] = {}  # seq -> arrival time
        self.delivered: set[int] = set()
        self.feed_seq = [0, 0]
        self.feed_ns = [0, 0]
        self.dups = self.late = 0

    def _drain(self, out: list) -> None:
        assert self.next is not None
        while self.next in self.held:
            del self.held[self.next]
            out.append((DLV_HELD, self.next))
            self.delivered.add(self.next)
            self.next += 1

    def _gap(self, a: int, b: int, out: list) -> None:
        out.append((DLV_GAP, a, b))
        self.delivered -= set(range(a, b + 1))
        self.next = b + 1

    def _due(self, now: int) -> bool:
        assert self.next is not None
        if now - min(self.held.values()) >= self.timeout:
            return True
        alive = [f for f in (0, 1) if self.feed_ns[f] and now - self.feed_ns[f] <= self.dead]
        return bool(alive) and all(self.feed_seq[f] > self.next + self.slack for f in alive)

    def _resolve(self, now: int, out: list) -> None:
        while self.held and self._due(now):
            assert self.next is not None
            self._gap(self.next, min(self.held) - 1, out)
            self._drain(out)

    def on(self, seq: int, feed: int, now: int) -> list:
        out: list = []
        self.feed_ns[feed] = now
        if self.next is None:
            self.next = seq
        self.feed_seq[feed] = max(self.feed_seq[feed], seq)
        if seq == self.next:
            out.append((DLV_LIVE, seq))
            self.delivered.add(seq)
            self.next += 1
            self._drain(out)
        elif seq < self.next:
            if self.next - seq <= 1024 and seq in self.delivered:
                self.dups += 1
            else:
                self.late += 1
        elif seq - self.next >= self.slots:
            while self.next < seq:
                lower = [h for h in self.held if h < seq]
                if not lower:
                    self._gap(self.next, seq - 1, out)
                    break
                h = min(lower)
                if h > self.next:
                    self._gap(self.next, h - 1, out)
                self._drain(out)
            out.append((DLV_LIVE, seq))
            self.delivered.add(seq)
            self.next = seq + 1
            self._drain(out)
        elif seq in self.held:
            self.dups += 1
        else:
            self.held[seq] = now
        if self.held:
            self._resolve(now, out)
        return out

    def expire(self, now: int) -> list:
        out: list = []
        if self.held:
            self._resolve(now, out)
        return out


def _kernel_view(d: list[tuple[int, int, int]]) -> list:
    return [(w, b) if w != DLV_GAP else (w, a, b) for w, a, b in d]


schedules = st.lists(
    st.tuples(st.integers(0, 1), st.integers(-3, 12), st.integers(0, 3_000)),
    min_size=1, max_size=150,
)


@settings(max_examples=150, deadline=None)
@given(schedules, st.sampled_from([0, 1, 3]), st.sampled_from([4, 8]))
def test_arbitration_matches_reference(steps, slack, slots):
    cfg = SequencerConfig(hold_slots=slots, reorder_slack=slack, gap_timeout_ns=2_000,
                          feed_dead_ns=5_000, hold_slot_bytes=64)
    seq = Sequencer(1, cfg)
    ref = RefArbiter(slots, slack, 2_000, 5_000)
    now = 1
    base = 100
    for feed, jump, dt in steps:
        now += dt
        if jump == -3:  # an idle poll: only timers run
            assert _kernel_view(seq.expire(0, now)) == ref.expire(now)
            continue
        s = max(1, base + jump)
        base += 1
        got = _kernel_view(seq.arbitrate(header_only(s), 0, feed, now))
        assert got == ref.on(s, feed, now), (s, feed, now)
    c = seq.counter_dict(0)
    assert c["duplicates"] == ref.dups
    assert c["late"] == ref.late
    # every copy is accounted for exactly once
    held_now = int(seq.chan[0, CH_HOLD_COUNT])
    assert (c["packets_a"] + c["packets_b"] == c["delivered"] + c["duplicates"] + c["late"]
            + held_now + c["drop_too_big"])


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31), st.floats(0, 0.3), st.floats(0, 0.3), st.floats(0, 0.2),
       st.floats(0, 0.3))
def test_arbitration_delivers_each_sequence_once_in_order(seed, loss_a, loss_b, dup, reorder):
    rng = random.Random(seed)
    n = 300
    arrivals = impair([header_only(s) for s in range(1, n + 1)], rng, loss_a=loss_a,
                      loss_b=loss_b, dup=dup, reorder=reorder)
    seq = Sequencer(1, SequencerConfig(hold_slots=64, reorder_slack=3,
                                       gap_timeout_ns=10**15, hold_slot_bytes=64))
    delivered: list[int] = []
    lost: list[int] = []
    for t, (feed, pk) in enumerate(arrivals, start=1):
        for what, a, b in seq.arbitrate(pk, 0, feed, t):
            if what == DLV_GAP:
                lost.extend(range(a, b + 1))
            else:
                delivered.append(b)
    seen = {struct.unpack_from("<I", pk)[0] for _, pk in arrivals}
    first = min(delivered + lost)
    assert delivered == sorted(set(delivered)), "each sequence once, in order"
    # a sequence is declared lost only if no feed ever carried it
    assert not set(lost) & seen
    # with slack >= the reordering depth, everything carried is delivered (the tail
    # may still wait behind a sequence no feed carried)
    top = max(delivered)
    assert set(range(first, top + 1)) == set(delivered) | set(lost)


def test_duplicate_late_and_window():
    seq = Sequencer(1, SequencerConfig(hold_slots=4, reorder_slack=0, hold_slot_bytes=64))
    assert seq.arbitrate(header_only(10), 0, FEED_A, 1) == [(DLV_LIVE, 0, 10)]
    assert seq.arbitrate(header_only(10), 0, FEED_B, 2) == []  # B's copy
    assert seq.arbitrate(header_only(12), 0, FEED_A, 3) == []  # 11 missing: hold
    # B passes 11 too: lost on both feeds
    d = seq.arbitrate(header_only(12), 0, FEED_B, 4)
    assert d[0] == (DLV_GAP, 11, 11) and d[1][0] == DLV_HELD and d[1][2] == 12
    assert seq.held_packet(0, d[1][1]) == header_only(12)
    assert seq.arbitrate(header_only(11), 0, FEED_A, 5) == []  # late
    c = seq.counter_dict(0)
    assert (c["duplicates"], c["late"], c["gaps"], c["gap_packets"]) == (2, 1, 1, 1)
    # far beyond the hold window: everything before it is lost at once
    d = seq.arbitrate(header_only(30), 0, FEED_A, 6)
    assert d == [(DLV_GAP, 13, 29), (DLV_LIVE, 0, 30)]


def test_gap_timeout_with_a_single_feed():
    seq = Sequencer(1, SequencerConfig(hold_slots=8, reorder_slack=5, gap_timeout_ns=1000,
                                       hold_slot_bytes=64))
    seq.arbitrate(header_only(1), 0, FEED_A, 0)
    assert seq.arbitrate(header_only(3), 0, FEED_A, 100) == []
    assert seq.expire(0, 500) == []
    d = seq.expire(0, 1100)
    assert [x[0] for x in d] == [DLV_GAP, DLV_HELD] and d[0][1:] == (2, 2)


def test_sequence_reset_by_channel_reset():
    seq = Sequencer(1, SequencerConfig(hold_slots=8, hold_slot_bytes=64))
    for s in range(500, 503):
        seq.arbitrate(header_only(s), 0, FEED_A, s)
    seq.arbitrate(header_only(505), 0, FEED_A, 600)  # held, becomes obsolete
    # a lower sequence without ChannelReset is a late packet; with it, a restart
    assert seq.arbitrate(header_only(1), 0, FEED_A, 700) == []
    assert seq.arbitrate(header_only(1, template=4), 0, FEED_A, 701) == [(DLV_LIVE, 0, 1)]
    assert seq.arbitrate(header_only(1, template=4), 0, FEED_B, 702) == []  # B's copy
    assert seq.arbitrate(header_only(2), 0, FEED_B, 703) == [(DLV_LIVE, 0, 2)]
    c = seq.counter_dict(0)
    assert (c["seq_resets"], c["drop_obsolete"], c["late"], c["duplicates"]) == (1, 1, 1, 1)


def test_short_datagram_is_counted():
    seq = Sequencer(1, SequencerConfig(hold_slot_bytes=64))
    assert seq.arbitrate(b"\x01\x02", 0, FEED_A, 1) == []
    assert seq.counter_dict(0)["drop_short"] == 1


# --------------------------------------------------------------------------
# Recovery, end to end on real MDP packets
# --------------------------------------------------------------------------
def _u8(p: bytes) -> np.ndarray:
    return np.frombuffer(p, dtype=np.uint8).copy()


class Harness:
    def __init__(self, sids: list[int], *, seed: int = 1, **cfg: object) -> None:
        self.sim = FeedSim(sids, seed=seed)
        self.seq = Sequencer(1, SequencerConfig(hold_slot_bytes=2048, **cfg))  # type: ignore[arg-type]
        self.feed = SequencedFeed(self.seq)
        self.books = RefBooks()
        self.now = 0
        self.rows: list[np.ndarray] = []

    def inc(self, pk: bytes, feed: int = FEED_A) -> np.ndarray:
        self.now += 1000
        rows = self.feed.on_datagram(ROLE_INCREMENTAL, _u8(pk), len(pk), 0, feed, self.now)
        self.books.apply(rows)
        self.rows.append(rows.copy())
        return rows

    def snap(self, packets: list[bytes]) -> np.ndarray:
        got = []
        for pk in packets:
            rows = self.feed.on_datagram(ROLE_SNAPSHOT, _u8(pk), len(pk), 0)
            self.books.apply(rows)
            self.rows.append(rows.copy())
            got.append(rows.copy())
        return np.concatenate(got) if got else np.zeros(0, MD_EVENT)

    def status(self, sid: int) -> int:
        return self.seq.status(sid)

    def assert_books(self) -> None:
        for sid in self.sim.insts:
            assert self.books.book(sid) == self.sim.book(sid), sid


def test_gap_marks_suspect_then_rpt_decides_and_snapshot_recovers():
    h = Harness([1, 2], recover_on_start=False)
    for _ in range(10):
        h.inc(h.sim.next_packet())
    h.assert_books()
    lost = h.sim.next_packet(touch=[1])  # only instrument 1 changes in the lost packet
    h.inc(h.sim.next_packet(touch=[2]))  # arrives ahead: held
    h.inc(h.sim.next_packet(touch=[2]), FEED_A)
    # B is silent (never seen): the timeout declares the gap
    h.now += 10_000_000
    rows = h.feed.on_idle(h.now)
    h.books.apply(rows)
    assert h.seq.counter_dict(0)["gaps"] == 1
    # instrument 2's RptSeq continued through the gap: confirmed; 1 is still suspect
    assert h.status(2) == INST_OK and h.status(1) == INST_SUSPECT
    assert h.seq.wants_snapshot(0)
    h.inc(h.sim.next_packet(touch=[1]))  # RptSeq jumps: RECOVERING, buffered
    assert h.status(1) == INST_RECOVERING
    snap_at = h.sim.snapshot_loop()  # LastMsgSeqNumProcessed = now
    for _ in range(5):
        h.inc(h.sim.next_packet())
    assert h.seq.counter_dict(0)["buffered"] > 0
    h.snap(snap_at)
    assert h.status(1) == INST_OK and not h.seq.wants_snapshot(0)
    c = h.seq.counter_dict(0)
    assert c["recovered"] == 1 and c["confirmed"] == 1 and c["replayed"] > 0
    h.assert_books()
    del lost


def test_stale_snapshot_is_skipped_and_newer_one_applies():
    h = Harness([7], recover_on_start=False)
    for _ in range(5):
        h.inc(h.sim.next_packet())
    old = h.sim.snapshot_loop()
    h.sim.next_packet()  # lost on both feeds
    for _ in range(3):
        h.inc(h.sim.next_packet())
    h.now += 10_000_000
    h.books.apply(h.feed.on_idle(h.now))
    assert h.status(7) == INST_RECOVERING
    h.snap(old)  # taken before the gap: cannot repair it
    assert h.status(7) == INST_RECOVERING
    assert h.seq.counter_dict(0)["snapshots_skipped"] == 1
    h.snap(h.sim.snapshot_loop())
    assert h.status(7) == INST_OK
    h.assert_books()


def test_late_join_waits_for_snapshots():
    h = Harness([3, 4, 5], recover_on_start=True)
    for sid in (3, 4, 5):
        h.seq.add_instrument(sid, 0)
    assert all(h.status(s) == INST_RECOVERING for s in (3, 4, 5))
    assert h.seq.wants_snapshot(0)
    for _ in range(20):  # the publisher ran before we joined
        h.sim.next_packet()
    for _ in range(5):
        rows = h.inc(h.sim.next_packet())
        assert rows.size == 0  # nothing is applied on an unknown book
    loop = h.sim.snapshot_loop()
    for _ in range(5):
        h.inc(h.sim.next_packet())
    h.snap(loop)
    assert all(h.status(s) == INST_OK for s in (3, 4, 5))
    h.assert_books()
    for _ in range(5):
        h.inc(h.sim.next_packet())
    h.assert_books()


def test_channel_reset_clears_and_restarts_rpt_seq():
    h = Harness([1, 2], recover_on_start=False)
    for _ in range(8):
        h.inc(h.sim.next_packet())
    h.sim.next_packet()  # lost: both instruments end up pending
    for _ in range(3):
        h.inc(h.sim.next_packet())
    h.books.apply(h.feed.on_idle(h.now + 10**8))
    assert h.seq.pending(0) > 0
    h.inc(h.sim.channel_reset_packet())
    assert h.seq.pending(0) == 0 and not h.seq.wants_snapshot(0)
    assert all(h.status(s) == INST_OK for s in (1, 2))
    assert h.books.book(1) == {"0": [], "1": []}
    for _ in range(10):
        h.inc(h.sim.next_packet())
    assert h.seq.last_rpt_seq(1) == h.sim.insts[1].rpt
    h.assert_books()


def test_buffer_overflow_needs_a_newer_snapshot():
    h = Harness([1], recover_on_start=False, buffer_rows=8)
    h.inc(h.sim.next_packet())
    h.sim.next_packet()  # lost
    h.inc(h.sim.next_packet())
    h.books.apply(h.feed.on_idle(h.now + 10**8))
    h.inc(h.sim.next_packet())
    assert h.status(1) == INST_RECOVERING
    early = h.sim.snapshot_loop()
    for _ in range(10):
        h.inc(h.sim.next_packet())
    assert h.seq.counter_dict(0)["drop_buffer_full"] > 0
    h.snap(early)  # older than the rows the overflow lost
    assert h.status(1) == INST_RECOVERING
    h.snap(h.sim.snapshot_loop())
    assert h.status(1) == INST_OK
    h.assert_books()


def test_stale_channel_sets_and_clears_the_bit():
    h = Harness([1], recover_on_start=False, stale_after_ns=5_000)
    h.inc(h.sim.next_packet())
    assert h.status(1) == INST_OK
    assert h.seq.check_stale(h.now + 4_000) == 0
    assert h.seq.check_stale(h.now + 6_000) == 1
    assert h.status(1) == INST_OK | INST_STALE and not h.seq.tradeable(1)
    h.inc(h.sim.next_packet())
    assert h.status(1) == INST_OK
    assert h.seq.counter_dict(0)["stale"] == 1


# --------------------------------------------------------------------------
# The gate on hand-made rows
# --------------------------------------------------------------------------
def _row(kind: int, sid: int, rpt: int, msg_seq: int, flags: int = 0) -> np.ndarray:
    r = np.zeros(1, dtype=MD_EVENT)
    r["kind"], r["security_id"], r["rpt_seq"], r["msg_seq"], r["flags"] = (kind, sid, rpt,
                                                                          msg_seq, flags)
    return r


def _gate(seq: Sequencer, rows: np.ndarray) -> np.ndarray:
    from core.sequencing import _gate_rows

    out = np.zeros(64, dtype=MD_EVENT)
    k = _gate_rows(rows, rows.size, 0, seq.chan, seq.inst, seq.inst_status, seq.index,
                   seq.rbuf, out, 0)
    return out[:k]


def test_end_of_event_moves_to_the_last_row_that_goes_out():
    seq = Sequencer(1, SequencerConfig(recover_on_start=False))
    seq.add_instrument(1)
    seq.add_instrument(2)
    _gate(seq, np.concatenate([_row(EV_BOOK, 1, 1, 1), _row(EV_BOOK, 2, 1, 1)]))
    # instrument 2 jumps (buffered) and carries the event's end
    out = _gate(seq, np.concatenate([_row(EV_BOOK, 1, 2, 2), _row(EV_BOOK, 2, 5, 2,
                                                                   FLAG_END_OF_EVENT)]))
    assert out.size == 1 and out[0]["security_id"] == 1
    assert out[0]["flags"] & FLAG_END_OF_EVENT


def test_unsequenced_rows_follow_their_instrument():
    seq = Sequencer(1, SequencerConfig(recover_on_start=False))
    seq.add_instrument(1)
    out = _gate(seq, np.concatenate([_row(EV_BOOK, 1, 1, 1), _row(EV_ORDER, 1, 0, 1)]))
    assert out.size == 2
    out = _gate(seq, np.concatenate([_row(EV_BOOK, 1, 9, 2), _row(EV_ORDER, 1, 0, 2)]))
    assert out.size == 0 and seq.counter_dict(0)["buffered"] == 2


def test_untracked_instruments_pass_through_without_auto_register():
    seq = Sequencer(1, SequencerConfig(auto_register=False))
    out = _gate(seq, np.concatenate([_row(EV_BOOK, 77, 5, 1), _row(EV_BOOK, 77, 9, 2)]))
    assert out.size == 2 and seq.counter_dict(0)["untracked"] == 2
    assert seq.row_of(77) == -1


def test_snapshot_not_continuing_the_buffer_is_refused():
    from core.sequencing import _gate_snapshot

    seq = Sequencer(1, SequencerConfig(recover_on_start=False))
    seq.add_instrument(1)
    _gate(seq, _row(EV_BOOK, 1, 1, 1))
    _gate(seq, _row(EV_BOOK, 1, 5, 3))  # jump: buffered from RptSeq 5
    assert seq.status(1) == INST_RECOVERING
    out = np.zeros(16, dtype=MD_EVENT)
    snap = _row(EV_SNAPSHOT, 1, 2, 1)  # RptSeq 2, LastMsgSeqNumProcessed 2
    snap["aux"] = 2
    k = _gate_snapshot(snap, 1, 0, seq.chan, seq.inst, seq.inst_status, seq.index, seq.rbuf,
                       out, 0)
    assert k == 0 and seq.status(1) == INST_RECOVERING  # RptSeq 3, 4 would be missing
    snap["rpt_seq"] = 4
    k = _gate_snapshot(snap, 1, 0, seq.chan, seq.inst, seq.inst_status, seq.index, seq.rbuf,
                       out, 0)
    assert k == 2 and seq.status(1) == INST_OK
    assert out[1]["rpt_seq"] == 5 and out[1]["flags"] & FLAG_END_OF_EVENT


def test_instrument_table_full_passes_rows_through():
    seq = Sequencer(1, SequencerConfig(max_instruments=1, recover_on_start=False))
    out = _gate(seq, np.concatenate([_row(EV_BOOK, 1, 1, 1), _row(EV_BOOK, 2, 1, 1)]))
    assert out.size == 2
    assert seq.counter_dict(0)["drop_instruments_full"] == 1


# --------------------------------------------------------------------------
# Property: any impairment, books end equal to the publisher's
# --------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31), st.floats(0, 0.25), st.floats(0, 0.25), st.floats(0, 0.1),
       st.floats(0, 0.2), st.booleans(), st.booleans())
def test_books_equal_publisher_after_any_impairment(seed, loss_a, loss_b, dup, reorder,
                                                    late_join, reset):
    rng = random.Random(seed)
    sids = [101, 202, 303, 404]
    h = Harness(sids, seed=seed, recover_on_start=late_join, reorder_slack=3,
                gap_timeout_ns=50_000)
    if late_join:
        for _ in range(15):
            h.sim.next_packet()
    snapshots: dict[int, list[bytes]] = {}
    clean: list[bytes] = []
    for i in range(160):
        if reset and i == 80:
            clean.append(h.sim.channel_reset_packet())
        else:
            clean.append(h.sim.next_packet())
        if i % 40 == 20:
            snapshots[h.sim.seq] = h.sim.snapshot_loop()
    lost_both = frozenset(rng.sample(range(5, 150), 3))
    arrivals = impair(clean, rng, loss_a=loss_a, loss_b=loss_b, dup=dup, reorder=reorder,
                      lost_both=lost_both)
    for feed, pk in arrivals:
        h.inc(pk, feed)
        s = struct.unpack_from("<I", pk)[0]
        if s in snapshots and h.seq.wants_snapshot(0):
            h.snap(snapshots[s])
    # a loss at the very end shows only when the next packet comes: send a clean tail
    for _ in range(2):
        h.inc(h.sim.next_packet(), FEED_A)
    h.books.apply(h.feed.on_idle(h.now + 10**9))
    for _ in range(3):  # the loop keeps running until everyone is back
        if h.seq.wants_snapshot(0):
            h.snap(h.sim.snapshot_loop())
    assert h.seq.pending(0) == 0
    assert all(h.status(s) == INST_OK for s in sids)
    h.assert_books()
    c = h.seq.counter_dict(0)
    assert c["delivered"] + c["gap_packets"] == h.seq.next_seq(0) - int(h.seq.chan[0, CH_FIRST_SEQ])
    # rows of one instrument go out in MsgSeqNum order (recovery included)
    rows = np.concatenate(h.rows)
    for sid in sids:
        seqs = rows["msg_seq"][(rows["security_id"] == sid) & (rows["kind"] == EV_BOOK)]
        assert np.all(np.diff(seqs.astype(np.int64)) >= 0)


@pytest.mark.parametrize("n", [0, 5, 11])
def test_arbitrate_rejects_bad_feed(n):
    seq = Sequencer(1, SequencerConfig(hold_slot_bytes=64))
    with pytest.raises(ValueError):
        seq.arbitrate(header_only(n), 0, 2, 0)
    with pytest.raises(ValueError):
        seq.arbitrate(header_only(n), 3, FEED_A, 0)
