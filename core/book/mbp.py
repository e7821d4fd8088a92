"""Market-by-price books: level-indexed MDP 3.0 book management on preallocated arrays.

One int64 array ``book[n_instr, N_BOOK_SIDES, MAX_DEPTH, N_LEVEL_FIELDS]`` holds every
instrument's outright book (depth from tag 264, up to 10), implied book (2 deep) and
the consolidated view (see ``core.types``). Kernels here move levels and keep the
per-side state of the event boundary (``IS_BID_CLEAN`` ... in the instrument table);
the rest of the per-instrument bookkeeping (RptSeq, dirty marks, counters) is in
``core.market``.

MDP 3.0 price-level book management, as CME documents it:

* New (0): insert at MDPriceLevel; that level and the ones below shift down one,
  the last level of the book depth falls off.
* Change (1): replace quantity/order count (and price) at MDPriceLevel.
* Delete (2): remove MDPriceLevel; the levels below shift up one, the last
  level becomes blank (CME then sends a New to fill it if it has one).
* DeleteThru (3): clear the whole side.
* DeleteFrom (4): remove the top MDPriceLevel levels (1..n); the rest shift up n.
* Overlay (5): replace the level in place (no shift).

Levels are positions, not prices: an entry goes to its stated level and a level
never sent stays blank in place (a capture joined mid-session has holes).

At each event boundary the consolidated view is rebuilt and the invariants checked.
Rescanning both sides is most of the cost of an event, so a side is tracked as *clean*
while it provably stays valid: levels 1..n filled, the rest blank, prices strictly
sorted, no negative size (``_clean_after``, O(1) per entry from the neighbouring
levels). A clean side's consolidated view is a plain copy, kept so by applying each
entry to both in one pass (``_mbp_apply_mirrored``: each level loaded once, nothing past
the filled levels moved), and its invariant bits are 0; any other side is rescanned
(``_finish_event_slow``). The result equals a full rescan.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from core.types import (
    BOOK_ASK,
    BOOK_BID,
    BOOK_CONS_ASK,
    BOOK_CONS_BID,
    BOOK_IMPLIED_ASK,
    BOOK_IMPLIED_BID,
    IMPLIED_DEPTH,
    INV_CROSSED,
    INV_NEGATIVE,
    INV_UNSORTED,
    IS_BID_BITS,
    IS_BID_CLEAN,
    IS_IMPLIED_LIVE,
    IS_SIDES_TOUCHED,
    LV_ORDERS,
    LV_PX,
    LV_QTY,
    MAX_DEPTH,
    MD_CHANGE,
    MD_DELETE,
    MD_DELETE_FROM,
    MD_DELETE_THRU,
    MD_NEW,
    MD_OVERLAY,
    N_BOOK_SIDES,
    N_LEVEL_FIELDS,
    NULL_I64,
)

_NULL = np.int64(NULL_I64)

# Kernels are compiled without numba's runtime (``_nrt=False``): none allocates, and a
# call of a function with array arguments otherwise pays two refcount calls per array
# (measured: 30-80 ns per call with a few arrays).
NO_NRT: dict[str, Any] = {"_nrt": False}

# Return codes of _mbp_apply
APPLY_OK = 0
APPLY_BAD_LEVEL = 1
APPLY_BAD_ACTION = 2


def new_books(n_instr: int) -> np.ndarray:
    """A blank book array for ``n_instr`` instruments."""
    book = np.zeros((n_instr, N_BOOK_SIDES, MAX_DEPTH, N_LEVEL_FIELDS), dtype=np.int64)
    book[:, :, :, LV_PX] = NULL_I64
    return book


@njit(cache=True, inline="always", **NO_NRT)
def _blank_level(book, row, side, i):
    book[row, side, i, LV_PX] = _NULL
    book[row, side, i, LV_QTY] = 0
    book[row, side, i, LV_ORDERS] = 0


@njit(cache=True, inline="always", **NO_NRT)
def _set_level(book, row, side, i, px, qty, orders):
    book[row, side, i, LV_PX] = px
    book[row, side, i, LV_QTY] = qty
    book[row, side, i, LV_ORDERS] = orders


@njit(cache=True, inline="always", **NO_NRT)
def _move_level(book, row, side, dst, src):
    """Level ``src`` of ``side`` to level ``dst``."""
    _set_level(book, row, side, dst, book[row, side, src, LV_PX],
               book[row, side, src, LV_QTY], book[row, side, src, LV_ORDERS])


@njit(cache=True, inline="always", **NO_NRT)
def _move_level_mirrored(book, row, side, out_side, dst, src):
    """Level ``src`` of ``side`` to level ``dst`` of ``side`` and of ``out_side`` (read once)."""
    px = book[row, side, src, LV_PX]
    qty = book[row, side, src, LV_QTY]
    orders = book[row, side, src, LV_ORDERS]
    _set_level(book, row, side, dst, px, qty, orders)
    _set_level(book, row, out_side, dst, px, qty, orders)


@njit(cache=True, **NO_NRT)
def _mbp_clear_side(book, row, side):
    for i in range(MAX_DEPTH):
        _blank_level(book, row, side, i)


@njit(cache=True, **NO_NRT)
def _mbp_clear(book, row):
    """Empty every side of one instrument (book reset, snapshot, channel reset)."""
    for side in range(N_BOOK_SIDES):
        _mbp_clear_side(book, row, side)


@njit(cache=True, inline="always", **NO_NRT)
def _mbp_apply(book, row, side, level, action, px, qty, orders, depth):
    """Apply one MBP entry to ``book[row, side]`` with ``depth`` levels in use.

    ``level`` is MDPriceLevel (1-based). Returns APPLY_OK, APPLY_BAD_LEVEL (level
    outside 1..depth; nothing changed) or APPLY_BAD_ACTION.
    """
    if action == MD_DELETE_THRU:
        for i in range(depth):
            _blank_level(book, row, side, i)
        return APPLY_OK
    if level < 1 or level > depth:
        return APPLY_BAD_LEVEL
    li = level - 1
    if action in (MD_CHANGE, MD_OVERLAY):
        _set_level(book, row, side, li, px, qty, orders)
    elif action == MD_NEW:
        for i in range(depth - 1, li, -1):
            _move_level(book, row, side, i, i - 1)
        _set_level(book, row, side, li, px, qty, orders)
    elif action == MD_DELETE:
        for i in range(li, depth - 1):
            _move_level(book, row, side, i, i + 1)
        _blank_level(book, row, side, depth - 1)
    elif action == MD_DELETE_FROM:
        # the top `level` levels go; level n+1 becomes level 1
        for i in range(depth):
            src = i + level
            if src < depth:
                _move_level(book, row, side, i, src)
            else:
                _blank_level(book, row, side, i)
    else:
        return APPLY_BAD_ACTION
    return APPLY_OK


@njit(cache=True, inline="always", **NO_NRT)
def _mbp_apply_mirrored(book, row, side, out_side, level, action, px, qty, orders, depth,
                        filled):
    """``_mbp_apply`` to a clean side with ``filled`` leading levels (the rest blank) and,
    identically, to ``out_side``, its consolidated view (equal before and after): one
    pass, each level loaded once, and no level past the filled ones is moved (blank over
    blank)."""
    if action == MD_DELETE_THRU:
        for i in range(filled):
            _blank_level(book, row, side, i)
            _blank_level(book, row, out_side, i)
        return APPLY_OK
    if level < 1 or level > depth:
        return APPLY_BAD_LEVEL
    li = level - 1
    if action in (MD_CHANGE, MD_OVERLAY):
        _set_level(book, row, side, li, px, qty, orders)
        _set_level(book, row, out_side, li, px, qty, orders)
    elif action == MD_NEW:
        for i in range(min(filled, depth - 1), li, -1):
            _move_level_mirrored(book, row, side, out_side, i, i - 1)
        _set_level(book, row, side, li, px, qty, orders)
        _set_level(book, row, out_side, li, px, qty, orders)
    elif action == MD_DELETE:
        if li < filled:
            for i in range(li, filled - 1):
                _move_level_mirrored(book, row, side, out_side, i, i + 1)
            _blank_level(book, row, side, filled - 1)
            _blank_level(book, row, out_side, filled - 1)
    elif action == MD_DELETE_FROM:
        for i in range(filled):
            src = i + level
            if src < filled:
                _move_level_mirrored(book, row, side, out_side, i, src)
            else:
                _blank_level(book, row, side, i)
                _blank_level(book, row, out_side, i)
    else:
        return APPLY_BAD_ACTION
    return APPLY_OK


@njit(cache=True, **NO_NRT)
def _mbp_set_level(book, row, side, level, px, qty, orders, depth):
    """Snapshot entry: write a level in place (the book was cleared before)."""
    if level < 1 or level > depth:
        return APPLY_BAD_LEVEL
    _set_level(book, row, side, level - 1, px, qty, orders)
    return APPLY_OK


@njit(cache=True, inline="always", **NO_NRT)
def _better(px_a, px_b, is_bid):
    return px_a > px_b if is_bid else px_a < px_b


@njit(cache=True, **NO_NRT)
def _consolidate_side(book, row, out_side, side, imp_side, depth, is_bid):
    """Merge outright and implied levels by price into ``out_side`` (top MAX_DEPTH).

    Blank levels are skipped; equal prices add quantities and order counts.
    """
    i = 0
    j = 0
    k = 0
    if book[row, imp_side, 0, LV_PX] == _NULL and book[row, imp_side, 1, LV_PX] == _NULL:
        # no implied liquidity (the common case): compact the outright levels
        for i in range(depth):
            px = book[row, side, i, LV_PX]
            if px != _NULL:
                book[row, out_side, k, LV_PX] = px
                book[row, out_side, k, LV_QTY] = book[row, side, i, LV_QTY]
                book[row, out_side, k, LV_ORDERS] = book[row, side, i, LV_ORDERS]
                k += 1
        while k < MAX_DEPTH:
            _blank_level(book, row, out_side, k)
            k += 1
        return
    while k < MAX_DEPTH:
        # next non-blank on each side
        while i < depth and book[row, side, i, LV_PX] == _NULL:
            i += 1
        while j < IMPLIED_DEPTH and book[row, imp_side, j, LV_PX] == _NULL:
            j += 1
        has_o = i < depth
        has_i = j < IMPLIED_DEPTH
        if not has_o and not has_i:
            break
        po = book[row, side, i, LV_PX] if has_o else _NULL
        pi = book[row, imp_side, j, LV_PX] if has_i else _NULL
        if has_o and (not has_i or po == pi or _better(po, pi, is_bid)):
            book[row, out_side, k, LV_PX] = po
            book[row, out_side, k, LV_QTY] = book[row, side, i, LV_QTY]
            book[row, out_side, k, LV_ORDERS] = book[row, side, i, LV_ORDERS]
            if has_i and po == pi:
                book[row, out_side, k, LV_QTY] += book[row, imp_side, j, LV_QTY]
                book[row, out_side, k, LV_ORDERS] += book[row, imp_side, j, LV_ORDERS]
                j += 1
            i += 1
        else:
            book[row, out_side, k, LV_PX] = pi
            book[row, out_side, k, LV_QTY] = book[row, imp_side, j, LV_QTY]
            book[row, out_side, k, LV_ORDERS] = book[row, imp_side, j, LV_ORDERS]
            j += 1
        k += 1
    while k < MAX_DEPTH:
        _blank_level(book, row, out_side, k)
        k += 1


@njit(cache=True, **NO_NRT)
def _consolidate(book, row, depth):
    _consolidate_side(book, row, BOOK_CONS_BID, BOOK_BID, BOOK_IMPLIED_BID, depth, True)
    _consolidate_side(book, row, BOOK_CONS_ASK, BOOK_ASK, BOOK_IMPLIED_ASK, depth, False)


@njit(cache=True, **NO_NRT)
def _side_invariants(book, row, side, depth, is_bid):
    """Bits for one side: a negative size, or a price not strictly worse than the
    level above it (blank levels ignored)."""
    bits = 0
    last = _NULL
    sign = 1 if is_bid else -1  # compare bids descending, asks ascending, in one loop
    for i in range(depth):
        px = book[row, side, i, LV_PX]
        if px == _NULL:
            continue
        if book[row, side, i, LV_QTY] < 0 or book[row, side, i, LV_ORDERS] < 0:
            bits |= INV_NEGATIVE
        if last != _NULL and sign * (last - px) <= 0:
            bits |= INV_UNSORTED
        last = px
    return bits


@njit(cache=True, **NO_NRT)
def _best_px(book, row, side, depth):
    """Price of the first non-blank level (NULL_I64 if the side is empty)."""
    for i in range(depth):
        px = book[row, side, i, LV_PX]
        if px != _NULL:
            return px
    return _NULL


@njit(cache=True, **NO_NRT)
def _check_invariants(book, row, depth, check_cross):
    """Invariant bits of one instrument's books (read at an event boundary).

    Outright and implied sides must be sorted (bids strictly descending, asks
    strictly ascending, blanks ignored) with no negative size; the outright book
    must not be crossed or locked (skipped when ``check_cross`` is false, e.g.
    in pre-open where CME shows a crossed book).
    """
    bits = _side_invariants(book, row, BOOK_BID, depth, True)
    bits |= _side_invariants(book, row, BOOK_ASK, depth, False)
    if _best_px(book, row, BOOK_IMPLIED_BID, IMPLIED_DEPTH) != _NULL:
        bits |= _side_invariants(book, row, BOOK_IMPLIED_BID, IMPLIED_DEPTH, True)
    if _best_px(book, row, BOOK_IMPLIED_ASK, IMPLIED_DEPTH) != _NULL:
        bits |= _side_invariants(book, row, BOOK_IMPLIED_ASK, IMPLIED_DEPTH, False)
    if check_cross:
        bb = _best_px(book, row, BOOK_BID, depth)
        ba = _best_px(book, row, BOOK_ASK, depth)
        if bb != _NULL and ba != _NULL and bb >= ba:
            bits |= INV_CROSSED
    return bits


# --------------------------------------------------------------------------
# clean-side tracking (see the module docstring)
# --------------------------------------------------------------------------
@njit(cache=True, inline="always", **NO_NRT)
def _clean_after(book, row, side, level, action, px, qty, orders, depth, n, sign):
    """Leading levels of a clean side (``n`` of them) once the entry is applied, or -1
    if the side may no longer be clean. Call before ``_mbp_apply``: it reads the
    neighbours as they are. ``sign`` 1 for bids, -1 for asks."""
    if action == MD_DELETE_THRU:
        return 0
    if level < 1 or level > depth:
        return n  # rejected: nothing changes
    li = level - 1
    if action == MD_DELETE:
        return n - 1 if li < n else n  # the levels either side were already in order
    if action == MD_DELETE_FROM:
        return n - level if level < n else 0
    if action != MD_CHANGE and action != MD_OVERLAY and action != MD_NEW:
        return n  # rejected
    if px == _NULL or qty < 0 or orders < 0 or li > n:
        return -1  # a blank, negative or hole-making entry: rescan
    if li > 0 and sign * (book[row, side, li - 1, LV_PX] - px) <= 0:
        return -1
    if action == MD_NEW:
        # the old level li moves to li + 1 (unless it falls off the book)
        if li < n and li + 1 < depth and sign * (px - book[row, side, li, LV_PX]) <= 0:
            return -1
        return n + 1 if n < depth else depth
    if li == n:
        return n + 1
    if li + 1 < n and sign * (px - book[row, side, li + 1, LV_PX]) <= 0:
        return -1
    return n


@njit(cache=True, inline="always", **NO_NRT)
def _rescan_side(book, row, side, out_side, depth, sign):
    """Rebuild the consolidated view of an outright side without implied levels (its
    non-blank levels, compacted) and check it, in one pass: returns (invariant bits,
    leading levels if the side is clean else -1). ``sign`` 1 for bids, -1 for asks."""
    bits = 0
    k = 0
    last = _NULL
    gap = False
    hole = False
    for i in range(depth):
        px = book[row, side, i, LV_PX]
        if px == _NULL:
            gap = True
            continue
        hole |= gap
        q = book[row, side, i, LV_QTY]
        o = book[row, side, i, LV_ORDERS]
        if q < 0 or o < 0:
            bits |= INV_NEGATIVE
        if last != _NULL and sign * (last - px) <= 0:
            bits |= INV_UNSORTED
        last = px
        book[row, out_side, k, LV_PX] = px
        book[row, out_side, k, LV_QTY] = q
        book[row, out_side, k, LV_ORDERS] = o
        k += 1
    n = k
    while k < MAX_DEPTH and book[row, out_side, k, LV_PX] != _NULL:
        _blank_level(book, row, out_side, k)  # the rest is blank already
        k += 1
    return bits, (n if bits == 0 and not hole else -1)


@njit(cache=True, inline="always", **NO_NRT)
def _mbp_apply_outright(book, inst, row, side, level, action, px, qty, orders, depth):
    """``_mbp_apply`` to an outright side (BOOK_BID/BOOK_ASK) with clean-side tracking.

    While a side is clean its consolidated view is the side itself, so the entry is
    applied to both (the same operation on the same levels gives the same levels) and
    the event boundary has nothing to do for it. An entry that may break cleanliness
    marks the side for a rescan at the boundary instead.
    """
    n_old = inst[row, IS_BID_CLEAN + side]
    n = n_old
    if n >= 0:
        n = _clean_after(book, row, side, level, action, px, qty, orders, depth, n,
                         1 - 2 * side)
    if n >= 0:
        rc = _mbp_apply_mirrored(book, row, side, BOOK_CONS_BID + side, level, action, px,
                                 qty, orders, depth, n_old)
    else:
        rc = _mbp_apply(book, row, side, level, action, px, qty, orders, depth)
    if rc == APPLY_OK:
        if n < 0:
            _side_unclean(inst, row, side)
        inst[row, IS_BID_CLEAN + side] = n
    return rc


@njit(cache=True, inline="always", **NO_NRT)
def _side_unclean(inst, row, side):
    """Outright ``side`` was written in a way not tracked: rescan it at the boundary."""
    inst[row, IS_BID_CLEAN + side] = -1
    inst[row, IS_SIDES_TOUCHED] |= 1 << side


@njit(cache=True, inline="always", **NO_NRT)
def _implied_written(inst, row):
    """An implied level was written: the consolidated view is a merge until the implied
    book is seen empty again (no mirroring meanwhile)."""
    inst[row, IS_IMPLIED_LIVE] = 1
    inst[row, IS_BID_CLEAN + BOOK_BID] = -1
    inst[row, IS_BID_CLEAN + BOOK_ASK] = -1


@njit(cache=True, **NO_NRT)
def _finish_implied(book, inst, row, depth, check_cross):
    """The event boundary while implied levels may be present: merge and check all."""
    _consolidate(book, row, depth)
    bits = _check_invariants(book, row, depth, check_cross)
    if (_best_px(book, row, BOOK_IMPLIED_BID, IMPLIED_DEPTH) == _NULL
            and _best_px(book, row, BOOK_IMPLIED_ASK, IMPLIED_DEPTH) == _NULL):
        # implied book empty again: per-side tracking resumes (rescan on next write)
        inst[row, IS_IMPLIED_LIVE] = 0
        inst[row, IS_BID_CLEAN + BOOK_BID] = -1
        inst[row, IS_BID_CLEAN + BOOK_ASK] = -1
        inst[row, IS_BID_BITS + BOOK_BID] = _side_invariants(book, row, BOOK_BID, depth, True)
        inst[row, IS_BID_BITS + BOOK_ASK] = _side_invariants(book, row, BOOK_ASK, depth, False)
    return bits


@njit(cache=True, **NO_NRT)
def _rescan_sides(book, inst, row, depth, touched):
    """Rescan the outright sides in ``touched`` (1 << side): consolidated view, bits and
    whether each is clean again."""
    for side in range(BOOK_BID, BOOK_ASK + 1):
        if touched & (1 << side):
            bits, n = _rescan_side(book, row, side, BOOK_CONS_BID + side, depth, 1 - 2 * side)
            inst[row, IS_BID_CLEAN + side] = n
            inst[row, IS_BID_BITS + side] = bits


@njit(cache=True, **NO_NRT)
def _finish_event_slow(book, inst, row, depth, check_cross):
    """The event boundary when ``_finish_event_fast`` cannot do it (an outright side to
    rescan, or implied levels): same result as ``_consolidate`` then
    ``_check_invariants``, rescanning only the sides marked for it."""
    if inst[row, IS_IMPLIED_LIVE] != 0:
        inst[row, IS_SIDES_TOUCHED] = 0
        return _finish_implied(book, inst, row, depth, check_cross)
    touched = inst[row, IS_SIDES_TOUCHED]
    inst[row, IS_SIDES_TOUCHED] = 0
    _rescan_sides(book, inst, row, depth, touched)
    return _finish_event_fast(book, inst, row, check_cross)


@njit(cache=True, inline="always", **NO_NRT)
def _finish_event_fast(book, inst, row, check_cross):
    """The common event boundary (no implied levels, no side to rescan): the invariant
    bits from the sides' state and the cross check; -1 if ``_finish_event_slow`` is
    needed. Kept free of calls: it is inlined into the row loop."""
    if (inst[row, IS_IMPLIED_LIVE] | inst[row, IS_SIDES_TOUCHED]) != 0:
        return -1
    bits = inst[row, IS_BID_BITS + BOOK_BID] | inst[row, IS_BID_BITS + BOOK_ASK]
    if check_cross:
        bb = book[row, BOOK_CONS_BID, 0, LV_PX]
        ba = book[row, BOOK_CONS_ASK, 0, LV_PX]
        if bb != _NULL and ba != _NULL and bb >= ba:
            bits |= INV_CROSSED
    return bits


@njit(cache=True, inline="always", **NO_NRT)
def _sides_cleared(inst, row):
    """Every side of ``row`` was just blanked (consolidated view too): clean, empty."""
    inst[row, IS_BID_CLEAN + BOOK_BID] = 0
    inst[row, IS_BID_CLEAN + BOOK_ASK] = 0
    inst[row, IS_BID_BITS + BOOK_BID] = 0
    inst[row, IS_BID_BITS + BOOK_ASK] = 0
    inst[row, IS_IMPLIED_LIVE] = 0
    inst[row, IS_SIDES_TOUCHED] = 0
