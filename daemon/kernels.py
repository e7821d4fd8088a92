"""The daemon's own njit glue: what sits between the components' kernels in a tick.

Each is one call over preallocated arrays (no allocation, nothing raised):

* ``_model_completed``: for every instrument that completed an event in the
  last packet and is traded, copy its feature row (books layer, float64) to the
  trader's features and the model's float32 input, run the model in place
  (onnxruntime's C API through ``core.model.model_step``) and publish alpha.
  A non-finite output publishes NaN, so the risk layer pauses the instrument.
* ``_market_view``: the MARKET_VIEW rows decide reads, from the books
  (``core.trading._market_view_from_books``), with the sequencer's verdict on
  top: an instrument the sequencer does not call OK is RECOVERING, a silent
  channel is STALE.
* ``_observe_tick``: per-stage latencies into the shared histograms and the
  tick-to-trade sample ring.
* ``_journal_push``: raw rows (order actions, execution reports) appended to the
  shared journal ring as JOURNAL_RECORD rows.

Numba caches a caller with the code of its callees but invalidates the cache
only when the caller's own file changes; ``_refresh_cache_stamp`` makes a change
to a callee's file (core/model.py, core/trading.py) invalidate ours too.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np


def _refresh_cache_stamp() -> None:
    """Touch this file when a module whose kernels we inline is newer (development only:
    an installed package never changes, and a read-only install is left alone)."""
    here = Path(__file__)
    core = here.parent.parent / "core"
    deps = [core / "model.py", core / "trading.py", core / "types.py"]
    with contextlib.suppress(OSError):
        mine = here.stat().st_mtime
        newest = max(p.stat().st_mtime for p in deps if p.exists())
        if newest > mine:
            os.utime(here, (newest + 1, newest + 1))


_refresh_cache_stamp()

from numba import njit  # noqa: E402

from core.model import C_N_LOGITS, model_step  # noqa: E402
from core.trading import _market_view_from_books  # noqa: E402
from core.types import (  # noqa: E402
    INST_OK,
    INST_STALE,
    INST_STATE_MASK,
    MDS_OK,
    MDS_RECOVERING,
    MDS_STALE,
)

# stages of the latency histograms (rows of the shared histogram array)
STAGE_RECEIVE = 0  # kernel receive timestamp -> the hot loop has the datagram
STAGE_DECODE = 1  # sequencing + decode + books + features
STAGE_MODEL = 2
STAGE_DECIDE = 3  # exec reports + market view + strategy + risk + OMS
STAGE_SEND = 4  # encode + send
STAGE_TICK_TO_TRADE = 5  # datagram in the hot loop -> orders on the wire
STAGE_NAMES = ("receive", "decode_book_features", "model", "strategy_risk", "encode_send",
               "tick_to_trade")
N_STAGES = len(STAGE_NAMES)


@njit(cache=True)
def _model_completed(completed: Any, n_completed: int, slot_of_row: Any, fstate: Any,
                     feat_col: int, n_feat: int, features: Any, model_in: Any, ctl: Any,
                     state: Any, out: Any, alpha: Any, run_model: bool) -> int:
    """Features and model of the traded instruments completed by the last packet."""
    steps = 0
    h3 = ctl[C_N_LOGITS]
    for j in range(n_completed):
        r = completed[j]
        if r < 0 or r >= slot_of_row.shape[0]:
            continue
        s = slot_of_row[r]
        if s < 0:
            continue
        for f in range(n_feat):
            v = fstate[r, feat_col + f]
            features[s, f] = v
            model_in[s, f] = v
        if run_model:
            if model_step(ctl, state, out, s):
                alpha[s] = out[s, h3]
            else:
                alpha[s] = np.nan
            steps += 1
    return steps


@njit(cache=True)
def _market_view(market: Any, books: Any, inst_state: Any, rows: Any, seq_status: Any,
                 seq_rows: Any, now_ns: int) -> None:
    """MARKET_VIEW of each traded instrument: the books, then the sequencer's verdict."""
    _market_view_from_books(market, books, inst_state, rows, now_ns)
    for i in range(seq_rows.shape[0]):
        s = seq_rows[i]
        if s < 0 or market[i].status != MDS_OK:
            continue
        st = seq_status[s]
        if st & INST_STALE:
            market[i].status = MDS_STALE
        elif (st & INST_STATE_MASK) != INST_OK:
            market[i].status = MDS_RECOVERING


@njit(cache=True)
def _bucket(bounds: Any, ns: int) -> int:
    lo = 0
    hi = bounds.shape[0]
    while lo < hi:  # first bound >= ns (np.searchsorted, left)
        mid = (lo + hi) >> 1
        if bounds[mid] < ns:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def _observe(hist: Any, bounds: Any, series: int, ns: int) -> None:
    if ns < 0:
        ns = 0
    b = _bucket(bounds, ns)
    hist[series, b] += 1
    w = hist.shape[1]
    hist[series, w - 2] += 1
    hist[series, w - 1] += ns


@njit(cache=True, inline="always")
def _sample(ring: Any, v: int) -> None:
    cap = ring.shape[0] - 1  # ring[-1] counts every sample ever written
    n = ring[cap]
    ring[n % cap] = v
    ring[cap] = n + 1


@njit(cache=True)
def _observe_tick(hist: Any, bounds: Any, stamps: Any, samples: Any, tick_samples: Any,
                  sent: int) -> None:
    """stamps = [receive_ns or -1, t0, t_decoded, t_model (or -1), t_decided, t_sent].

    ``tick_samples`` keeps the time of every tick (datagram in hand -> decided and
    sent); ``sent`` > 0: orders went out, so the send stage and tick-to-trade are
    recorded too (``samples`` keeps every tick-to-trade for exact percentiles)."""
    _sample(tick_samples, stamps[5] - stamps[1])
    if stamps[0] >= 0:
        _observe(hist, bounds, STAGE_RECEIVE, stamps[0])
    _observe(hist, bounds, STAGE_DECODE, stamps[2] - stamps[1])
    t_prev = stamps[2]
    if stamps[3] >= 0:
        _observe(hist, bounds, STAGE_MODEL, stamps[3] - stamps[2])
        t_prev = stamps[3]
    _observe(hist, bounds, STAGE_DECIDE, stamps[4] - t_prev)
    if sent > 0:
        _observe(hist, bounds, STAGE_SEND, stamps[5] - stamps[4])
        ttt = stamps[5] - stamps[1]
        _observe(hist, bounds, STAGE_TICK_TO_TRADE, ttt)
        _sample(samples, ttt)


@njit(cache=True)
def _journal_write(records: Any, h: int, tail: Any, src: Any, k: int, kind: int,
                   time_ns: int) -> int:
    """Write ``src[:k]`` (uint8 [rows, itemsize]) as JOURNAL_RECORD rows from head value
    ``h`` without publishing; returns the new head value (the caller stores it in the
    ring's head: several writes then one publish are atomic for the reader, even if the
    process dies in between). Rows beyond a full ring count as lost (``tail[1]``)."""
    cap = records.shape[0]
    room = cap - (h - tail[0])
    n = k if k <= room else room
    if n < k:
        tail[1] += k - n
    width = src.shape[1]
    for j in range(n):
        r = records[(h + j) & (cap - 1)]
        r.time_ns = time_ns
        r.kind = kind
        r.length = width
        p = r.payload
        for b in range(width):
            p[b] = src[j, b]
    return h + n


@njit(cache=True)
def _journal_push(records: Any, head: Any, tail: Any, src: Any, k: int, kind: int,
                  time_ns: int) -> int:
    """Append ``src[:k]`` as JOURNAL_RECORD rows and publish; returns the rows written."""
    h = head[0]
    h2 = _journal_write(records, h, tail, src, k, kind, time_ns)
    head[0] = h2  # publish after the payload
    return h2 - h


def byte_rows(rows: np.ndarray) -> np.ndarray:
    """A uint8 [n, itemsize] view of a structured array (for ``_journal_push``)."""
    return rows.view(np.uint8).reshape(rows.shape[0], rows.dtype.itemsize)


__all__ = [
    "N_STAGES",
    "STAGE_NAMES",
    "byte_rows",
]
