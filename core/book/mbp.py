"""Market-by-price books: level-indexed MDP 3.0 book management on preallocated arrays.

One int64 array ``book[n_instr, N_BOOK_SIDES, MAX_DEPTH, N_LEVEL_FIELDS]`` holds every
instrument's outright book (depth from tag 264, up to 10), implied book (2 deep) and
the consolidated view (see ``core.types``). Kernels here only move levels; the
per-instrument bookkeeping (RptSeq, dirty marks, counters) is in ``core.market``.

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
        book[row, side, li, LV_PX] = px
        book[row, side, li, LV_QTY] = qty
        book[row, side, li, LV_ORDERS] = orders
    elif action == MD_NEW:
        for i in range(depth - 1, li, -1):
            book[row, side, i, LV_PX] = book[row, side, i - 1, LV_PX]
            book[row, side, i, LV_QTY] = book[row, side, i - 1, LV_QTY]
            book[row, side, i, LV_ORDERS] = book[row, side, i - 1, LV_ORDERS]
        book[row, side, li, LV_PX] = px
        book[row, side, li, LV_QTY] = qty
        book[row, side, li, LV_ORDERS] = orders
    elif action == MD_DELETE:
        for i in range(li, depth - 1):
            book[row, side, i, LV_PX] = book[row, side, i + 1, LV_PX]
            book[row, side, i, LV_QTY] = book[row, side, i + 1, LV_QTY]
            book[row, side, i, LV_ORDERS] = book[row, side, i + 1, LV_ORDERS]
        _blank_level(book, row, side, depth - 1)
    elif action == MD_DELETE_FROM:
        # the top `level` levels go; level n+1 becomes level 1
        for i in range(depth):
            src = i + level
            if src < depth:
                book[row, side, i, LV_PX] = book[row, side, src, LV_PX]
                book[row, side, i, LV_QTY] = book[row, side, src, LV_QTY]
                book[row, side, i, LV_ORDERS] = book[row, side, src, LV_ORDERS]
            else:
                _blank_level(book, row, side, i)
    else:
        return APPLY_BAD_ACTION
    return APPLY_OK


@njit(cache=True, **NO_NRT)
def _mbp_set_level(book, row, side, level, px, qty, orders, depth):
    """Snapshot entry: write a level in place (the book was cleared before)."""
    if level < 1 or level > depth:
        return APPLY_BAD_LEVEL
    li = level - 1
    book[row, side, li, LV_PX] = px
    book[row, side, li, LV_QTY] = qty
    book[row, side, li, LV_ORDERS] = orders
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


@njit(cache=True, inline="always", **NO_NRT)
def _compact_checked(book, row, side, out_side, depth, sign):
    """Copy the non-blank outright levels of ``side`` into ``out_side`` and return the
    side's invariant bits, in one pass (``sign`` 1 for bids, -1 for asks)."""
    bits = 0
    k = 0
    last = _NULL
    for i in range(depth):
        px = book[row, side, i, LV_PX]
        if px == _NULL:
            continue
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
    while k < MAX_DEPTH and book[row, out_side, k, LV_PX] != _NULL:
        _blank_level(book, row, out_side, k)  # the rest is blank already
        k += 1
    return bits


@njit(cache=True, **NO_NRT)
def _finish_event_book(book, row, depth, check_cross):
    """At an event boundary: rebuild the consolidated view and return the invariant bits
    (same result as ``_consolidate`` then ``_check_invariants``, one pass when the
    instrument has no implied levels, the common case)."""
    if (_best_px(book, row, BOOK_IMPLIED_BID, IMPLIED_DEPTH) != _NULL
            or _best_px(book, row, BOOK_IMPLIED_ASK, IMPLIED_DEPTH) != _NULL):
        _consolidate(book, row, depth)
        return _check_invariants(book, row, depth, check_cross)
    bits = _compact_checked(book, row, BOOK_BID, BOOK_CONS_BID, depth, 1)
    bits |= _compact_checked(book, row, BOOK_ASK, BOOK_CONS_ASK, depth, -1)
    if check_cross:
        bb = book[row, BOOK_CONS_BID, 0, LV_PX]
        ba = book[row, BOOK_CONS_ASK, 0, LV_PX]
        if bb != _NULL and ba != _NULL and bb >= ba:
            bits |= INV_CROSSED
    return bits
