"""A seeded synthetic CME market: MBP-10 book updates and trades as ``MD_EVENT`` rows.

Used to train and test the model (``nanoarb train synthetic:N``), and by anything
that needs a realistic stream without a capture. The rows look like what the
MDP 3.0 decoder produces from a real incremental feed:

* one packet per match event (``msg_seq`` +1), holding a TradeSummary message
  (template 48, one EV_TRADE row per price level hit, with the aggressor side)
  when the event is a trade, then a book message (template 46: EV_BOOK rows,
  New/Change/Delete at levels 1..depth, bid and offer). ``FLAG_LAST_IN_MSG``
  ends each message, ``FLAG_END_OF_EVENT`` the last row of the event;
* MBP semantics as on CME: a New at level L shifts levels L.. down and the
  level pushed past the depth is dropped *without* a message; a Delete at L
  shifts the levels below up and CME fills the freed bottom level with a New
  at level ``depth``; ``rpt_seq`` counts entries per instrument;
* prices are PRICE9 mantissas (exponent -9) in Globex units, e.g. ES trades at
  500000.00 (= 5000.00 index points, display factor 0.01) with a tick of 25;
* the stream opens with one event per instrument that builds its book with New
  entries (as a consumer starting from empty books needs), then the requested
  events follow.

Dynamics (all in event time except the arrival clock):

* arrivals follow a Hawkes process with an exponential kernel (baseline
  ``base_rate_hz``, jump ``hawkes_alpha``, decay ``hawkes_beta``): bursts of
  activity, as real order flow has;
* each instrument has a latent fair value that diffuses at ``volatility_ticks``
  per sqrt(second). The gap between fair value and the book's mid sets a
  pressure ``tanh(signal * gap)`` that tilts who trades, who adds and who
  cancels. Order-flow imbalance therefore *leads* the mid (the opposing side is
  depleted first): a weak but real predictive structure a model can learn;
* spreads widen when a sweep or a cancel empties the best level and close
  through inside-spread adds (``improve_prob``, likelier the wider the gap),
  never below ``min_spread_ticks``. Refilled back levels leave a one-tick gap
  with probability ``gap_prob``.

Everything runs in one numba kernel seeded by ``seed``: the same config gives the
same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from core.types import (
    ET_BID,
    ET_OFFER,
    ET_TRADE,
    EV_BOOK,
    EV_TRADE,
    FLAG_END_OF_EVENT,
    FLAG_LAST_IN_MSG,
    MD_CHANGE,
    MD_DELETE,
    MD_EVENT,
    MD_NEW,
    MEI_END_OF_EVENT,
    MEI_LAST_QUOTE_MSG,
    MEI_LAST_TRADE_MSG,
    NULL_I64,
    PRICE9_EXPONENT,
    SIDE_BUY,
    SIDE_SELL,
)

TEMPLATE_BOOK = 46  # MDIncrementalRefreshBook
TEMPLATE_TRADE = 48  # MDIncrementalRefreshTradeSummary
MAX_DEPTH = 10
MAX_SWEEP = 3  # a market order walks at most this many levels
# Worst case rows of one event: MAX_SWEEP trades + (delete + refill) per level + change.
MAX_ROWS_PER_EVENT = 3 * MAX_SWEEP + 1

# columns of the per-instrument parameter matrix handed to the kernel
_P_TICK, _P_START, _P_VOL, _P_WEIGHT, _P_DEPTH = range(5)


@dataclass(frozen=True)
class SyntheticInstrument:
    """One simulated outright future. ``tick`` and ``start_price`` are PRICE9 mantissas."""

    security_id: int
    symbol: str
    tick: int
    start_price: int
    volatility_ticks: float = 1.5  # latent fair value, ticks per sqrt(second)
    weight: float = 1.0  # share of the arrivals
    depth: int = MAX_DEPTH


ES = SyntheticInstrument(security_id=5602, symbol="ESZ5", tick=25_000_000_000,
                         start_price=500_000_000_000_000, volatility_ticks=1.0, weight=2.0)
CL = SyntheticInstrument(security_id=2871, symbol="CLZ5", tick=1_000_000_000,
                         start_price=7_500_000_000_000, volatility_ticks=2.5, weight=1.0)


@dataclass(frozen=True)
class SyntheticConfig:
    """Knobs of the generator. Rates are per second, probabilities per event."""

    instruments: tuple[SyntheticInstrument, ...] = (ES, CL)
    seed: int = 7
    start_time_ns: int = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z
    base_rate_hz: float = 300.0
    hawkes_alpha: float = 1400.0  # intensity jump per event (1/s)
    hawkes_beta: float = 2000.0  # decay of the excitation (1/s); branching ratio alpha/beta
    signal: float = 0.8  # how strongly the fair-value gap tilts order flow
    trade_prob: float = 0.12
    cancel_prob: float = 0.42  # the rest are adds
    improve_prob: float = 0.8  # an add goes inside a spread one tick wider than the minimum
    min_spread_ticks: int = 1
    gap_prob: float = 0.05
    mean_add_lots: float = 3.0
    mean_trade_lots: float = 4.0
    block_trade_prob: float = 0.04  # a trade is 10x larger (sweeps)
    level_decay: float = 0.7  # P(level L) ~ level_decay**(L-1) for adds and cancels

    def __post_init__(self) -> None:
        if not self.instruments:
            raise ValueError("at least one instrument")
        ids = [i.security_id for i in self.instruments]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate security_id in {ids}")
        for ins in self.instruments:
            if ins.tick <= 0 or ins.start_price <= 0 or ins.start_price % ins.tick:
                raise ValueError(f"{ins.symbol}: start_price must be a positive multiple of tick")
            if not 2 <= ins.depth <= MAX_DEPTH:
                raise ValueError(f"{ins.symbol}: depth must be in 2..{MAX_DEPTH}")
        if not 0.0 <= self.hawkes_alpha < self.hawkes_beta:
            raise ValueError("Hawkes branching ratio alpha/beta must be in [0, 1)")
        if self.base_rate_hz <= 0:
            raise ValueError("base_rate_hz must be > 0")
        if min(self.trade_prob, self.cancel_prob) < 0 or self.trade_prob + self.cancel_prob >= 1:
            raise ValueError("trade_prob + cancel_prob must be < 1")
        if self.min_spread_ticks < 1:
            raise ValueError("min_spread_ticks must be >= 1")
        if not 0 < self.level_decay < 1:
            raise ValueError("level_decay must be in (0, 1)")


@dataclass(frozen=True)
class SyntheticMarket:
    """The generated stream and what a consumer needs to interpret it."""

    events: np.ndarray  # MD_EVENT rows
    n_events: int  # completed match events: one opening book per instrument + the requested
    tick_size: dict[int, int]  # security_id -> tick (PRICE9 mantissa)
    depth: dict[int, int]
    fair_value_ticks: np.ndarray  # float64 [n_events]: latent fair value of each event's instrument
    event_security_id: np.ndarray  # int32 [n_events]: the instrument of each completed event
    config: SyntheticConfig


def generate(n_events: int, config: SyntheticConfig | None = None, *,
             seed: int | None = None) -> SyntheticMarket:
    """Simulate ``n_events`` match events after one opening book-build event per instrument.

    ``seed`` overrides ``config.seed``.
    """
    cfg = config or SyntheticConfig()
    if n_events < 0:
        raise ValueError("n_events must be >= 0")
    s = cfg.seed if seed is None else seed
    inst = np.array(
        [[i.tick, i.start_price // i.tick, i.volatility_ticks, i.weight, i.depth]
         for i in cfg.instruments], dtype=np.float64)
    if np.any(inst[:, _P_WEIGHT] <= 0):
        raise ValueError("instrument weights must be > 0")
    sec = np.array([i.security_id for i in cfg.instruments], dtype=np.int32)
    ticks = np.array([i.tick for i in cfg.instruments], dtype=np.int64)
    knobs = np.array([
        cfg.base_rate_hz, cfg.hawkes_alpha, cfg.hawkes_beta, cfg.signal, cfg.trade_prob,
        cfg.cancel_prob, cfg.improve_prob, cfg.min_spread_ticks, cfg.gap_prob,
        cfg.mean_add_lots, cfg.mean_trade_lots, cfg.block_trade_prob, cfg.level_decay,
    ], dtype=np.float64)
    n_inst = len(cfg.instruments)
    out = np.zeros(n_events * MAX_ROWS_PER_EVENT + 2 * MAX_DEPTH * n_inst, dtype=MD_EVENT)
    fair = np.zeros(n_inst + n_events, dtype=np.float64)
    ev_sec = np.zeros(n_inst + n_events, dtype=np.int32)
    n_rows = _simulate(np.int64(s), np.int64(cfg.start_time_ns), n_events, inst, sec, ticks,
                       knobs, out, fair, ev_sec)
    # copy bytes, not fields: numpy's field-wise copy of a padded struct leaves the padding
    # uninitialised, and the same seed must give the same bytes
    events = np.zeros(n_rows, dtype=MD_EVENT)
    events.view(np.uint8)[:] = out[:n_rows].view(np.uint8)
    return SyntheticMarket(
        events=events,
        n_events=n_inst + n_events,
        tick_size={i.security_id: i.tick for i in cfg.instruments},
        depth={i.security_id: i.depth for i in cfg.instruments},
        fair_value_ticks=fair,
        event_security_id=ev_sec,
        config=cfg,
    )


def parse_spec(spec: str) -> int | None:
    """``"synthetic:200000"`` -> 200000; None if ``spec`` is not a synthetic source."""
    if not spec.startswith("synthetic:"):
        return None
    n = spec.split(":", 1)[1].replace("_", "")
    if not n.isdigit() or int(n) <= 0:
        raise ValueError(f"bad synthetic source {spec!r}: expected synthetic:N with N > 0")
    return int(n)


# --------------------------------------------------------------------------
# kernel
# --------------------------------------------------------------------------


@njit(cache=True)
def _level(decay, depth):
    # geometric level choice 1..depth without a loop over levels
    u = 1.0 - np.random.random()
    lv = 1 + int(np.log(u) / np.log(decay))
    return min(lv, depth)


@njit(cache=True)
def _lots(mean):
    # geometric on 1, 2, ... with the given mean
    return np.random.geometric(1.0 / mean) if mean > 1.0 else 1


@njit(cache=True)
def _emit(out, k, t_ns, sec, rpt, msg_seq, template, kind, action, etype, level, price,
          size, norders, side, aux, msg_index):
    r = out[k]
    r.transact_time = t_ns
    r.price = price
    r.size = size
    r.order_id = 0
    r.aux = aux
    r.security_id = sec
    r.rpt_seq = rpt
    r.msg_seq = msg_seq
    r.num_orders = norders
    r.template_id = template
    r.kind = kind
    r.action = action
    r.entry_type = etype
    r.price_level = level
    r.side = side
    r.match_event = 0
    r.flags = 0
    r.price_exponent = PRICE9_EXPONENT
    r.msg_index = msg_index


@njit(cache=True)
def _close_msg(out, first, k, mei):
    # stamp the message's MatchEventIndicator on all its rows, mark its last row
    for j in range(first, k):
        out[j].match_event = mei
    out[k - 1].flags |= FLAG_LAST_IN_MSG


@njit(cache=True)
def _simulate(seed, t0_ns, n_events, inst, sec_ids, ticks, knobs, out, fair_out, sec_out):
    np.random.seed(seed)
    n_inst = inst.shape[0]
    base, h_alpha, h_beta, signal = knobs[0], knobs[1], knobs[2], knobs[3]
    p_trade, p_cancel, p_improve = knobs[4], knobs[5], knobs[6]
    min_spread = int(knobs[7])
    p_gap, mean_add, mean_trade = knobs[8], knobs[9], knobs[10]
    p_block, lv_decay = knobs[11], knobs[12]

    D = MAX_DEPTH
    # books in ticks: px[i, side, level], side 0 = bid, 1 = ask
    px = np.zeros((n_inst, 2, D), np.int64)
    sz = np.zeros((n_inst, 2, D), np.int64)
    no = np.zeros((n_inst, 2, D), np.int64)
    depth = np.zeros(n_inst, np.int64)
    fair = np.zeros(n_inst)
    t_last = np.zeros(n_inst)
    rpt = np.zeros(n_inst, np.int64)
    cum_w = np.zeros(n_inst)
    w_sum = 0.0
    for i in range(n_inst):
        w_sum += inst[i, _P_WEIGHT]
        cum_w[i] = w_sum
        depth[i] = int(inst[i, _P_DEPTH])
        start = int(inst[i, _P_START])
        fair[i] = start + 0.5 * min_spread
        for lv in range(depth[i]):
            px[i, 0, lv] = start - lv
            px[i, 1, lv] = start + min_spread + lv
            for s in range(2):
                sz[i, s, lv] = 5 + lv * 4 + np.random.geometric(1.0 / (8.0 + 3.0 * lv))
                no[i, s, lv] = 1 + sz[i, s, lv] // 6

    k = 0
    msg_seq = 1
    # opening: each instrument's book is built by one event of New entries, bid then offer
    for i in range(n_inst):
        first = k
        for s in range(2):
            for lv in range(depth[i]):
                rpt[i] += 1
                _emit(out, k, t0_ns, sec_ids[i], rpt[i], msg_seq, TEMPLATE_BOOK, EV_BOOK, MD_NEW,
                      ET_OFFER if s == 1 else ET_BID, lv + 1, px[i, s, lv] * ticks[i],
                      sz[i, s, lv], no[i, s, lv], 0, NULL_I64, 0)
                k += 1
        _close_msg(out, first, k, MEI_LAST_QUOTE_MSG | MEI_END_OF_EVENT)
        out[k - 1].flags |= FLAG_END_OF_EVENT
        msg_seq += 1
        fair_out[i] = fair[i]
        sec_out[i] = sec_ids[i]

    t = 0.0
    excite = 0.0
    trade_id = 1
    prev_ns = t0_ns
    for ev in range(n_inst, n_inst + n_events):
        # --- Hawkes arrival by thinning: the intensity only decays until the next event
        while True:
            lam_bar = base + excite
            w = np.random.exponential(1.0 / lam_bar)
            t += w
            excite *= np.exp(-h_beta * w)
            if np.random.random() * lam_bar <= base + excite:
                break
        excite += h_alpha
        t_ns = t0_ns + np.int64(t * 1e9)
        if t_ns < prev_ns:
            t_ns = prev_ns
        prev_ns = t_ns

        # --- which instrument
        u = np.random.random() * w_sum
        i = 0
        while i < n_inst - 1 and u > cum_w[i]:
            i += 1
        d = depth[i]
        tick = ticks[i]
        sec = sec_ids[i]
        fair[i] += inst[i, _P_VOL] * np.sqrt(t - t_last[i]) * np.random.standard_normal()
        t_last[i] = t
        fair_out[ev] = fair[i]
        sec_out[ev] = sec
        mid = 0.5 * (px[i, 0, 0] + px[i, 1, 0])
        pressure = np.tanh(signal * (fair[i] - mid))  # > 0: buyers are informed

        r = np.random.random()
        first = k
        if r < p_trade:
            # ---- aggressive order: trades (template 48), then the book it consumed (46)
            buy = np.random.random() < 0.5 + 0.4 * pressure
            s = 1 if buy else 0  # the passive side that is hit
            qty = _lots(mean_trade)
            if np.random.random() < p_block:
                qty *= 10
            lv_hit = 0
            filled_px = np.zeros(MAX_SWEEP, np.int64)
            filled_q = np.zeros(MAX_SWEEP, np.int64)
            filled_o = np.zeros(MAX_SWEEP, np.int64)
            remaining = qty
            while remaining > 0 and lv_hit < MAX_SWEEP:
                avail = sz[i, s, lv_hit]
                q = remaining if remaining < avail else avail
                filled_px[lv_hit] = px[i, s, lv_hit]
                filled_q[lv_hit] = q
                o = 1 + q // 5
                filled_o[lv_hit] = o if o < no[i, s, lv_hit] else no[i, s, lv_hit]
                remaining -= q
                lv_hit += 1
                if q < avail:
                    break
            for j in range(lv_hit):
                rpt[i] += 1
                _emit(out, k, t_ns, sec, rpt[i], msg_seq, TEMPLATE_TRADE, EV_TRADE, MD_NEW,
                      ET_TRADE, 0, filled_px[j] * tick, filled_q[j], filled_o[j] + 1,
                      SIDE_BUY if buy else SIDE_SELL, trade_id, 0)
                trade_id += 1
                k += 1
            _close_msg(out, first, k, MEI_LAST_TRADE_MSG)
            first = k
            # book: fully hit levels are deleted (from the top each time), the last one changed
            for j in range(lv_hit):
                if filled_q[j] >= sz[i, s, 0]:
                    k = _delete_level(out, k, t_ns, sec, rpt, i, s, 0, px, sz, no, d, tick,
                                      msg_seq, p_gap)
                else:
                    sz[i, s, 0] -= filled_q[j]
                    no[i, s, 0] = max(1, no[i, s, 0] - filled_o[j] + 1)
                    rpt[i] += 1
                    _emit(out, k, t_ns, sec, rpt[i], msg_seq, TEMPLATE_BOOK, EV_BOOK, MD_CHANGE,
                          ET_OFFER if s == 1 else ET_BID, 1, px[i, s, 0] * tick, sz[i, s, 0],
                          no[i, s, 0], 0, NULL_I64, 1)
                    k += 1
            # every trade changes the book, so the book message is never empty
            _close_msg(out, first, k, MEI_LAST_QUOTE_MSG | MEI_END_OF_EVENT)
            for j in range(first, k):
                out[j].msg_index = 1
        elif r < p_trade + p_cancel:
            # ---- cancel, more often on the side the informed flow is about to hit
            s = 1 if np.random.random() < 0.5 + 0.3 * pressure else 0
            lv = _level(lv_decay, d) - 1
            q = _lots(mean_add)
            if q >= sz[i, s, lv]:
                k = _delete_level(out, k, t_ns, sec, rpt, i, s, lv, px, sz, no, d, tick, msg_seq,
                                  p_gap)
            else:
                sz[i, s, lv] -= q
                if no[i, s, lv] > 1:
                    no[i, s, lv] -= 1
                rpt[i] += 1
                _emit(out, k, t_ns, sec, rpt[i], msg_seq, TEMPLATE_BOOK, EV_BOOK, MD_CHANGE,
                      ET_OFFER if s == 1 else ET_BID, lv + 1, px[i, s, lv] * tick, sz[i, s, lv],
                      no[i, s, lv], 0, NULL_I64, 0)
                k += 1
            _close_msg(out, first, k, MEI_LAST_QUOTE_MSG | MEI_END_OF_EVENT)
        else:
            # ---- passive add, more often on the informed side
            s = 0 if np.random.random() < 0.5 + 0.3 * pressure else 1
            q = _lots(mean_add)
            # the wider the spread, the likelier an add improves it (liquidity providers
            # compete for the gap): P = 1 - (1 - improve_prob) ** (spread - min_spread)
            gap = px[i, 1, 0] - px[i, 0, 0] - min_spread
            if gap > 0 and np.random.random() < 1.0 - (1.0 - p_improve) ** gap:
                # new best level inside the spread; the level pushed past the depth is
                # dropped silently (MBP semantics)
                for lv in range(d - 1, 0, -1):
                    px[i, s, lv] = px[i, s, lv - 1]
                    sz[i, s, lv] = sz[i, s, lv - 1]
                    no[i, s, lv] = no[i, s, lv - 1]
                px[i, s, 0] = px[i, s, 0] + 1 if s == 0 else px[i, s, 0] - 1
                q += _lots(mean_add)  # quoting into a gap is done with more size
                sz[i, s, 0] = q
                no[i, s, 0] = 1
                rpt[i] += 1
                _emit(out, k, t_ns, sec, rpt[i], msg_seq, TEMPLATE_BOOK, EV_BOOK, MD_NEW,
                      ET_OFFER if s == 1 else ET_BID, 1, px[i, s, 0] * tick, q, 1, 0,
                      NULL_I64, 0)
            else:
                lv = _level(lv_decay, d) - 1
                sz[i, s, lv] += q
                no[i, s, lv] += 1
                rpt[i] += 1
                _emit(out, k, t_ns, sec, rpt[i], msg_seq, TEMPLATE_BOOK, EV_BOOK, MD_CHANGE,
                      ET_OFFER if s == 1 else ET_BID, lv + 1, px[i, s, lv] * tick, sz[i, s, lv],
                      no[i, s, lv], 0, NULL_I64, 0)
            k += 1
            _close_msg(out, first, k, MEI_LAST_QUOTE_MSG | MEI_END_OF_EVENT)
        out[k - 1].flags |= FLAG_END_OF_EVENT
        msg_seq += 1
    return k


@njit(cache=True)
def _delete_level(out, k, t_ns, sec, rpt, i, s, lv, px, sz, no, d, tick, msg_seq, p_gap):
    """Delete level ``lv`` (0-based), shift up, refill the bottom with a New (as CME does)."""
    etype = ET_OFFER if s == 1 else ET_BID
    rpt[i] += 1
    _emit(out, k, t_ns, sec, rpt[i], msg_seq, TEMPLATE_BOOK, EV_BOOK, MD_DELETE, etype, lv + 1,
          px[i, s, lv] * tick, 0, 0, 0, NULL_I64, 0)
    k += 1
    for j in range(lv, d - 1):
        px[i, s, j] = px[i, s, j + 1]
        sz[i, s, j] = sz[i, s, j + 1]
        no[i, s, j] = no[i, s, j + 1]
    step = 2 if np.random.random() < p_gap else 1
    px[i, s, d - 1] = px[i, s, d - 2] + step if s == 1 else px[i, s, d - 2] - step
    sz[i, s, d - 1] = 5 + np.random.geometric(1.0 / 25.0)
    no[i, s, d - 1] = 1 + sz[i, s, d - 1] // 6
    rpt[i] += 1
    _emit(out, k, t_ns, sec, rpt[i], msg_seq, TEMPLATE_BOOK, EV_BOOK, MD_NEW, etype, d,
          px[i, s, d - 1] * tick, sz[i, s, d - 1], no[i, s, d - 1], 0, NULL_I64, 0)
    return k + 1
