"""Background order flow of the venue: seeded, clustered ORDERS for the matching engine.

The synthetic market of ``core.synthetic`` writes book-level events; a venue needs
the flow that causes them, as orders, so that a client's orders trade against a
real book. Same ideas, at the order level:

* arrivals follow a Hawkes process with an exponential kernel (baseline
  ``base_rate_hz``, jump ``hawkes_alpha``, decay ``hawkes_beta``), simulated
  exactly by thinning: bursts of activity, as real order flow has;
* each instrument has a latent fair price (in ticks) that diffuses as a random
  walk of ``volatility_ticks`` per sqrt(second), reflected inside the band;
* an arrival is an add, a cancel or a marketable order. Adds are DAY limit
  orders ``k`` ticks behind the touch around the fair price (``k`` geometric
  with ``level_decay``, bids at or below ``fair - spread/2``, offers at or
  above ``fair + spread/2``): when the fair price moves, new adds cross the
  stale side and trade, which is how prices move. Cancels remove one of the
  flow's resting orders, the further from the fair price of two picked at
  random; their rate grows with the number resting against ``target_orders``.
  Marketable orders are IOC ``sweep_ticks`` through the touch.

Everything is one njit kernel with its own splitmix64 generator: for a seed and
the same sequence of clock readings (``due(now_ns)``) the same commands come out,
whatever else the process does. Flow order ids carry the instrument and the
pool slot (``FLOW_ID_BIT | serial << 24 | instrument << 16 | slot``), so an
execution record finds its pool entry without a lookup table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numba import njit

from core.types import (
    MATCH_CMD,
    MATCH_EXEC,
    MCMD_CANCEL,
    MCMD_SUBMIT,
    MTIF_DAY,
    MTIF_IOC,
    MX_CANCELLED,
    MX_EXPIRED,
    MX_FILL,
    MX_REJECTED,
    SIDE_BUY,
    SIDE_SELL,
)

__all__ = ["FLOW_ID_BIT", "BackgroundFlow", "FlowInstrument", "is_flow_order"]

FLOW_ID_BIT = 1 << 62  # flow order ids; iLink order ids count up from 1 below it
SLOT_BITS = 16
NO_SLOT = (1 << SLOT_BITS) - 1  # IOC orders: never in the pool

# per-instrument float state fs[k, *]
FS_FAIR = 0  # latent fair price in ticks
FS_LAST_T = 1  # arrival time (s) of its last fair-price update
FS_VOL = 2  # ticks per sqrt(s)
FS_CUM_WEIGHT = 3  # cumulative arrival share (instrument pick)
FS_LO = 4  # lowest fair price allowed (ticks)
FS_HI = 5
N_FS = 6
# per-instrument int state fi[k, *]
FI_TICK = 0  # price mantissa of one tick
FI_N_LIVE = 1  # resting flow orders in the pool
FI_N_FREE = 2  # free pool slots
FI_BAND_LO = 3  # band in ticks (inclusive)
FI_BAND_HI = 4
N_FI = 5
# pool[k, slot, *]
P_ID = 0
P_TICKS = 1
P_SIDE = 2
# globals g[*] (float64) and gi[*] (int64)
G_T = 0  # time (s) of the last arrival
G_EXC = 1  # Hawkes excitation just after the last arrival
G_NEXT = 2  # time (s) of the next arrival
N_G = 4
GI_RNG = 0  # splitmix64 state
GI_SERIAL = 1  # flow orders issued
GI_ARRIVALS = 2
GI_ADDS = 3
GI_CANCELS = 4
GI_MARKET = 5
GI_SKIPPED = 6  # arrivals with nothing to do (empty pool for a cancel, full pool)
N_GI = 8
# parameters prm[*]
(PR_MU, PR_ALPHA, PR_BETA, PR_ADD, PR_CANCEL, PR_HALF_SPREAD, PR_LEVELS, PR_DECAY,
 PR_MEAN_QTY, PR_MEAN_MKT, PR_SWEEP, PR_TARGET, N_PR) = range(13)


def is_flow_order(order_id: int) -> bool:
    return bool(int(order_id) & FLOW_ID_BIT)


# --------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------
@njit(cache=True)
def _next_u64(gi):
    """splitmix64 (Steele, Lea, Flood 2014): one 64-bit draw."""
    z = np.uint64(gi[GI_RNG]) + np.uint64(0x9E3779B97F4A7C15)
    gi[GI_RNG] = np.int64(z)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True)
def _uniform(gi):
    """Uniform in (0, 1): never 0, so log() is safe."""
    return (np.float64(_next_u64(gi) >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)


@njit(cache=True)
def _normal(gi):
    u1 = _uniform(gi)
    u2 = _uniform(gi)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


@njit(cache=True)
def _qty(gi, mean):
    return 1 + np.int64(-math.log(_uniform(gi)) * (mean - 1.0))


@njit(cache=True)
def _next_arrival(g, gi, prm):
    """Ogata thinning from the last arrival: the intensity only decays until the next one."""
    mu = prm[PR_MU]
    beta = prm[PR_BETA]
    s = g[G_T]
    exc = g[G_EXC]
    while True:
        lam_bar = mu + exc
        w = -math.log(_uniform(gi)) / lam_bar
        s += w
        exc *= math.exp(-beta * w)
        if _uniform(gi) * lam_bar <= mu + exc:
            return s


@njit(cache=True)
def _pool_add(k, ticks, side, fi, pool, live, pos_of, free, gi):
    """Take a free slot for a new resting order; returns its order id, 0 if the pool is full."""
    nf = fi[k, FI_N_FREE]
    if nf == 0:
        return np.int64(0)
    slot = free[k, nf - 1]
    fi[k, FI_N_FREE] = nf - 1
    gi[GI_SERIAL] += 1
    oid = FLOW_ID_BIT | (gi[GI_SERIAL] << 24) | (np.int64(k) << SLOT_BITS) | np.int64(slot)
    pool[k, slot, P_ID] = oid
    pool[k, slot, P_TICKS] = ticks
    pool[k, slot, P_SIDE] = side
    n = fi[k, FI_N_LIVE]
    live[k, n] = slot
    pos_of[k, slot] = n
    fi[k, FI_N_LIVE] = n + 1
    return oid


@njit(cache=True)
def _pool_remove(k, slot, fi, pool, live, pos_of, free):
    n = fi[k, FI_N_LIVE]
    p = pos_of[k, slot]
    last = live[k, n - 1]
    live[k, p] = last
    pos_of[k, last] = p
    fi[k, FI_N_LIVE] = n - 1
    pool[k, slot, P_ID] = 0
    free[k, fi[k, FI_N_FREE]] = slot
    fi[k, FI_N_FREE] += 1


@njit(cache=True)
def _write_cmd(cmds, n, op, k, oid, side, price, qty, tif, owner, t_wall):
    c = cmds[n]
    c.op = op
    c.instrument = k
    c.order_id = np.uint64(oid)
    c.cl_ord_id = 0
    c.side = side
    c.price = price
    c.qty = qty
    c.tif = tif
    c.owner = owner
    c.smp_id = 0
    c.smp_instr = 0
    c.flags = 0
    c.transact_time = np.uint64(t_wall)


@njit(cache=True)
def _flow_step(until_s, fs, fi, pool, live, pos_of, free, g, gi, prm, cmds, owner,
               wall0_ns):
    """Commands for every arrival up to ``until_s`` (or until ``cmds`` is full)."""
    n_inst = fs.shape[0]
    n = 0
    cap = cmds.shape[0]
    half = prm[PR_HALF_SPREAD]
    while g[G_NEXT] <= until_s and n < cap:
        t = g[G_NEXT]
        g[G_EXC] = g[G_EXC] * math.exp(-prm[PR_BETA] * (t - g[G_T])) + prm[PR_ALPHA]
        g[G_T] = t
        gi[GI_ARRIVALS] += 1
        t_wall = wall0_ns + np.int64(t * 1e9)
        # instrument by weight
        u = _uniform(gi)
        k = 0
        while k < n_inst - 1 and u > fs[k, FS_CUM_WEIGHT]:
            k += 1
        # fair price: random walk since its last update, reflected inside the band
        dt = t - fs[k, FS_LAST_T]
        fs[k, FS_LAST_T] = t
        f = fs[k, FS_FAIR] + fs[k, FS_VOL] * math.sqrt(max(dt, 0.0)) * _normal(gi)
        lo = fs[k, FS_LO]
        hi = fs[k, FS_HI]
        if f < lo:
            f = min(2.0 * lo - f, hi)
        elif f > hi:
            f = max(2.0 * hi - f, lo)
        fs[k, FS_FAIR] = f
        n_live = fi[k, FI_N_LIVE]
        p_add = prm[PR_ADD]
        p_cancel = prm[PR_CANCEL] * min(2.0, n_live / prm[PR_TARGET])
        p_market = max(0.0, 1.0 - prm[PR_ADD] - prm[PR_CANCEL])
        if fi[k, FI_N_FREE] == 0:
            p_add = 0.0
        total = p_add + p_cancel + p_market
        if total <= 0.0:
            gi[GI_SKIPPED] += 1
            g[G_NEXT] = _next_arrival(g, gi, prm)
            continue
        u = _uniform(gi) * total
        side = SIDE_BUY if _uniform(gi) < 0.5 else SIDE_SELL
        tick = fi[k, FI_TICK]
        if u < p_add:
            behind = np.int64(math.log(_uniform(gi)) / math.log(prm[PR_DECAY]))
            behind = min(behind, np.int64(prm[PR_LEVELS]) - 1)
            if side == SIDE_BUY:
                ticks = np.int64(math.floor(f - half)) - behind
            else:
                ticks = np.int64(math.ceil(f + half)) + behind
            ticks = min(max(ticks, fi[k, FI_BAND_LO]), fi[k, FI_BAND_HI])
            oid = _pool_add(k, ticks, side, fi, pool, live, pos_of, free, gi)
            if oid != 0:
                _write_cmd(cmds, n, MCMD_SUBMIT, k, oid, side, ticks * tick,
                           _qty(gi, prm[PR_MEAN_QTY]), MTIF_DAY, owner, t_wall)
                n += 1
                gi[GI_ADDS] += 1
            else:
                gi[GI_SKIPPED] += 1
        elif u < p_add + p_cancel:
            if n_live == 0:
                gi[GI_SKIPPED] += 1
            else:
                a = live[k, np.int64(_uniform(gi) * n_live)]
                b = live[k, np.int64(_uniform(gi) * n_live)]
                if abs(pool[k, b, P_TICKS] - f) > abs(pool[k, a, P_TICKS] - f):
                    a = b
                oid = pool[k, a, P_ID]
                _write_cmd(cmds, n, MCMD_CANCEL, k, oid, pool[k, a, P_SIDE], 0, 0, MTIF_DAY,
                           owner, t_wall)
                _pool_remove(k, a, fi, pool, live, pos_of, free)
                n += 1
                gi[GI_CANCELS] += 1
        else:
            sweep = prm[PR_SWEEP]
            if side == SIDE_BUY:
                ticks = np.int64(math.ceil(f + half + sweep))
            else:
                ticks = np.int64(math.floor(f - half - sweep))
            ticks = min(max(ticks, fi[k, FI_BAND_LO]), fi[k, FI_BAND_HI])
            gi[GI_SERIAL] += 1
            oid = (FLOW_ID_BIT | (gi[GI_SERIAL] << 24) | (np.int64(k) << SLOT_BITS)
                   | np.int64(NO_SLOT))
            _write_cmd(cmds, n, MCMD_SUBMIT, k, oid, side, ticks * tick,
                       _qty(gi, prm[PR_MEAN_MKT]), MTIF_IOC, owner, t_wall)
            n += 1
            gi[GI_MARKET] += 1
        g[G_NEXT] = _next_arrival(g, gi, prm)
    return n


@njit(cache=True)
def _flow_seed(levels, per_level, fs, fi, pool, live, pos_of, free, gi, prm, cmds, owner,
               t_wall):
    """The opening book: ``per_level`` orders on each of ``levels`` ticks per side."""
    n = 0
    half = prm[PR_HALF_SPREAD]
    for k in range(fs.shape[0]):
        f = fs[k, FS_FAIR]
        for j in range(levels):
            for side in (SIDE_BUY, SIDE_SELL):
                for _ in range(per_level):
                    if n >= cmds.shape[0]:
                        return n
                    if side == SIDE_BUY:
                        ticks = np.int64(math.floor(f - half)) - j
                    else:
                        ticks = np.int64(math.ceil(f + half)) + j
                    if ticks < fi[k, FI_BAND_LO] or ticks > fi[k, FI_BAND_HI]:
                        continue
                    oid = _pool_add(k, ticks, side, fi, pool, live, pos_of, free, gi)
                    if oid == 0:
                        continue
                    _write_cmd(cmds, n, MCMD_SUBMIT, k, oid, side, ticks * fi[k, FI_TICK],
                               _qty(gi, prm[PR_MEAN_QTY]), MTIF_DAY, owner, t_wall)
                    n += 1
    return n


@njit(cache=True)
def _flow_on_execs(execs, n, owner, fi, pool, live, pos_of, free):
    """Forget flow orders that are done (filled, cancelled, expired, rejected)."""
    for i in range(n):
        e = execs[i]
        if e.owner != owner:
            continue
        et = e.exec_type
        done = et in (MX_CANCELLED, MX_EXPIRED, MX_REJECTED) or (
            et == MX_FILL and e.leaves_qty == 0)
        if not done:
            continue
        oid = np.int64(e.order_id)
        if (oid & FLOW_ID_BIT) == 0:
            continue
        slot = oid & NO_SLOT
        k = (oid >> SLOT_BITS) & 0xFF
        if slot == NO_SLOT or k >= pool.shape[0] or pool[k, slot, P_ID] != oid:
            continue
        _pool_remove(k, slot, fi, pool, live, pos_of, free)


# --------------------------------------------------------------------------
# Facade
# --------------------------------------------------------------------------
class FlowInstrument:
    """What the flow needs of an instrument (prices are PRICE9 mantissas)."""

    __slots__ = ("band_high", "band_low", "start_price", "tick", "volatility_ticks", "weight")

    def __init__(self, tick: int, start_price: int, band_low: int, band_high: int,
                 volatility_ticks: float, weight: float) -> None:
        if tick <= 0 or start_price % tick or band_low % tick or band_high % tick:
            raise ValueError("prices must be on the tick grid")
        if not band_low <= start_price <= band_high:
            raise ValueError("start_price outside the band")
        self.tick = tick
        self.start_price = start_price
        self.band_low = band_low
        self.band_high = band_high
        self.volatility_ticks = volatility_ticks
        self.weight = weight


class BackgroundFlow:
    """Seeded background order flow for the instruments of one matching engine.

    ``seed_book(now_ns)`` returns the opening orders; ``due(now_ns)`` the commands
    of every arrival up to ``now_ns`` (call again while it returns a full batch);
    ``on_execs(execs)`` must see every execution record of the engine so the flow
    forgets its orders that are gone. Times: ``now_ns`` is the venue's monotonic
    clock; commands carry ``wall_offset_ns + arrival`` as their TransactTime.
    """

    def __init__(self, instruments: Sequence[FlowInstrument], *, seed: int, owner: int,
                 start_ns: int, wall_offset_ns: int, base_rate_hz: float = 200.0,
                 hawkes_alpha: float = 600.0, hawkes_beta: float = 1000.0,
                 add_prob: float = 0.55, cancel_prob: float = 0.35, spread_ticks: int = 1,
                 levels: int = 12, level_decay: float = 0.8, mean_qty: float = 3.0,
                 mean_market_qty: float = 4.0, sweep_ticks: int = 2, target_orders: int = 80,
                 batch: int = 4096) -> None:
        if not instruments or len(instruments) > 255:
            raise ValueError("1..255 instruments")
        if not 0 <= hawkes_alpha < hawkes_beta or base_rate_hz <= 0:
            raise ValueError("need base_rate_hz > 0 and 0 <= alpha < beta")
        n = len(instruments)
        cap = min(2 * target_orders + 64, NO_SLOT)
        self.owner = owner
        self.start_ns = start_ns
        self.wall0_ns = wall_offset_ns + start_ns
        self.prm = np.zeros(N_PR, dtype=np.float64)
        self.prm[[PR_MU, PR_ALPHA, PR_BETA, PR_ADD, PR_CANCEL, PR_HALF_SPREAD, PR_LEVELS,
                  PR_DECAY, PR_MEAN_QTY, PR_MEAN_MKT, PR_SWEEP, PR_TARGET]] = (
            base_rate_hz, hawkes_alpha, hawkes_beta, add_prob, cancel_prob, spread_ticks / 2.0,
            levels, level_decay, mean_qty, mean_market_qty, sweep_ticks, target_orders)
        self.fs = np.zeros((n, N_FS), dtype=np.float64)
        self.fi = np.zeros((n, N_FI), dtype=np.int64)
        weights = np.array([ins.weight for ins in instruments], dtype=np.float64)
        cum = np.cumsum(weights / weights.sum())
        cum[-1] = 1.0
        margin = levels + sweep_ticks + spread_ticks + 2
        for k, ins in enumerate(instruments):
            lo, hi = ins.band_low // ins.tick, ins.band_high // ins.tick
            self.fs[k, FS_FAIR] = ins.start_price // ins.tick
            self.fs[k, FS_VOL] = ins.volatility_ticks
            self.fs[k, FS_CUM_WEIGHT] = cum[k]
            self.fs[k, FS_LO] = min(lo + margin, ins.start_price // ins.tick)
            self.fs[k, FS_HI] = max(hi - margin, ins.start_price // ins.tick)
            self.fi[k, FI_TICK] = ins.tick
            self.fi[k, FI_BAND_LO] = lo
            self.fi[k, FI_BAND_HI] = hi
            self.fi[k, FI_N_FREE] = cap
        self.pool = np.zeros((n, cap, 3), dtype=np.int64)
        self.live = np.zeros((n, cap), dtype=np.int64)
        self.pos_of = np.zeros((n, cap), dtype=np.int64)
        self.free = np.tile(np.arange(cap - 1, -1, -1, dtype=np.int64), (n, 1))
        self.g = np.zeros(N_G, dtype=np.float64)
        self.gi = np.zeros(N_GI, dtype=np.int64)
        self.gi[GI_RNG] = int(seed) % (1 << 63)
        self.cmds = np.zeros(batch, dtype=MATCH_CMD)
        self.g[G_NEXT] = _next_arrival(self.g, self.gi, self.prm)

    def _s(self, now_ns: int) -> float:
        return (now_ns - self.start_ns) / 1e9

    def seed_book(self, now_ns: int, levels: int, per_level: int) -> np.ndarray:
        """Opening orders (a view of the command buffer, valid until the next call)."""
        n = _flow_seed(levels, per_level, self.fs, self.fi, self.pool, self.live, self.pos_of,
                       self.free, self.gi, self.prm, self.cmds, self.owner,
                       self.wall0_ns + (now_ns - self.start_ns))
        return self.cmds[:n]

    def due(self, now_ns: int) -> np.ndarray:
        """Commands of the arrivals up to ``now_ns`` (a view, valid until the next call)."""
        n = _flow_step(self._s(now_ns), self.fs, self.fi, self.pool, self.live, self.pos_of,
                       self.free, self.g, self.gi, self.prm, self.cmds, self.owner,
                       self.wall0_ns)
        return self.cmds[:n]

    def rebase(self, now_ns: int) -> None:
        """Start the flow's time at ``now_ns`` (before any arrival: e.g. after the JIT
        warm-up, which must not become a burst of overdue arrivals)."""
        wall_offset = self.wall0_ns - self.start_ns
        self.start_ns = now_ns
        self.wall0_ns = wall_offset + now_ns
        self.g[G_T] = 0.0
        self.g[G_EXC] = 0.0
        self.fs[:, FS_LAST_T] = 0.0
        self.g[G_NEXT] = _next_arrival(self.g, self.gi, self.prm)

    def skip_to(self, now_ns: int) -> None:
        """Forget the arrivals up to ``now_ns`` (the flow was paused); fair prices keep
        diffusing over the pause."""
        self.g[G_T] = max(self.g[G_T], self._s(now_ns))
        self.g[G_EXC] = 0.0
        self.g[G_NEXT] = _next_arrival(self.g, self.gi, self.prm)

    def next_arrival_ns(self) -> int:
        return self.start_ns + int(self.g[G_NEXT] * 1e9)

    def on_execs(self, execs: np.ndarray) -> None:
        if execs.dtype != MATCH_EXEC:
            raise TypeError("execs must be a MATCH_EXEC array")
        if len(execs):
            _flow_on_execs(execs, len(execs), self.owner, self.fi, self.pool, self.live,
                           self.pos_of, self.free)

    def fair_price(self, row: int) -> float:
        """Latent fair price of an instrument (PRICE9 mantissa, not on the tick grid)."""
        return float(self.fs[row, FS_FAIR] * self.fi[row, FI_TICK])

    def resting(self, row: int) -> int:
        """Flow orders the flow believes rest on the book."""
        return int(self.fi[row, FI_N_LIVE])

    def counters(self) -> dict[str, int]:
        names = ("serial", "arrivals", "adds", "cancels", "marketable", "skipped")
        return {name: int(self.gi[GI_SERIAL + i]) for i, name in enumerate(names)}


def warm_up() -> None:
    """Compile (or load) every kernel of the flow on a throw-away instance."""
    fl = BackgroundFlow([FlowInstrument(1, 100, 10, 190, 1.0, 1.0)], seed=1, owner=0,
                        start_ns=0, wall_offset_ns=0, target_orders=4, batch=16)
    fl.seed_book(0, 1, 1)
    fl.due(10_000_000)
    fl.skip_to(20_000_000)
    fl.on_execs(np.zeros(1, dtype=MATCH_EXEC))
