"""Shared-memory arrays and single-producer rings between the hot loop and the control plane.

The control plane (metrics HTTP, log formatting, journal fsync, control socket)
runs in a child process so that nothing it does can take the GIL from the hot
loop. The two share one ``multiprocessing.shared_memory`` block laid out from a
fixed list of ``(name, dtype, shape)``: both sides build the same numpy views.

Rings are single-producer / single-consumer: the hot loop writes records then
publishes by storing the new ``head`` (a plain int64 store; x86-64 keeps stores
in order, and numpy writes the payload before the head). The consumer reads up
to ``head`` and stores its ``tail``. A producer that finds the ring full drops
the record and counts it (``lost``) instead of blocking: the hot loop never waits.
"""

from __future__ import annotations

import _posixshmem
import contextlib
import secrets
from collections.abc import Sequence
from multiprocessing import resource_tracker, shared_memory
from typing import Any

import numpy as np

Layout = Sequence[tuple[str, np.dtype[Any] | str | type, tuple[int, ...]]]

_ALIGN = 64  # cache line: rings' head and tail live on different lines


class SharedBlock:
    """Named numpy arrays in one shared-memory segment."""

    def __init__(self, layout: Layout, name: str | None = None, create: bool = True):
        offsets: list[tuple[str, np.dtype[Any], tuple[int, ...], int]] = []
        pos = 0
        for key, dt, shape in layout:
            d = np.dtype(dt)
            offsets.append((key, d, tuple(shape), pos))
            nbytes = d.itemsize * int(np.prod(shape, dtype=np.int64))
            pos += (nbytes + _ALIGN - 1) // _ALIGN * _ALIGN
        self.size = max(pos, _ALIGN)
        self.owner = create
        if create:
            name = name or f"nanoarb-{secrets.token_hex(6)}"
            self._shm = shared_memory.SharedMemory(name=name, create=True, size=self.size)
        else:
            if name is None:
                raise ValueError("attaching to a shared block needs its name")
            self._shm = shared_memory.SharedMemory(name=name, create=False)
        # Python < 3.13 hands every segment to a resource tracker that unlinks it when
        # the process exits, even one only attached. Lifetime is ours: the owner
        # unlinks in close(), and after a crash the control plane still holds the
        # mapping it needs to drain the journal.
        resource_tracker.unregister(self._shm._name, "shared_memory")  # type: ignore[attr-defined]
        buf = self._shm.buf
        assert buf is not None
        if create:
            np.frombuffer(buf, dtype=np.uint8, count=self.size)[:] = 0
        self.name = self._shm.name
        self.arrays: dict[str, np.ndarray] = {}
        for key, d, shape, off in offsets:
            count = int(np.prod(shape, dtype=np.int64))
            view = np.frombuffer(buf, dtype=d, count=count, offset=off)
            self.arrays[key] = view.reshape(shape)

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]

    def close(self) -> None:
        self.arrays.clear()
        # a view still alive somewhere keeps the mapping (it goes with the process, and
        # SharedMemory.__del__ must not try again); the name goes now
        try:
            self._shm.close()
        except BufferError:
            self._shm.close = lambda: None  # type: ignore[method-assign]
        if self.owner:
            # not SharedMemory.unlink(): it would unregister from the tracker a second time
            with contextlib.suppress(FileNotFoundError):
                _posixshmem.shm_unlink(self._shm._name)  # type: ignore[attr-defined]


def ring_layout(
    prefix: str, dtype: np.dtype[Any], capacity: int
) -> list[tuple[str, Any, tuple[int, ...]]]:
    """Layout entries for one ring: records, then head and tail counters on their own lines."""
    if capacity <= 0 or capacity & (capacity - 1):
        raise ValueError("ring capacity must be a power of two")
    return [
        (f"{prefix}.records", dtype, (capacity,)),
        (f"{prefix}.head", np.int64, (8,)),  # [0] = records published
        (f"{prefix}.tail", np.int64, (8,)),  # [0] = records consumed, [1] = lost (producer full)
    ]


class Ring:
    """One SPSC ring over arrays of a ``SharedBlock`` (or plain arrays in tests)."""

    __slots__ = ("_cap", "_head", "_mask", "_tail", "records")

    def __init__(self, block: SharedBlock | dict[str, np.ndarray], prefix: str):
        self.records = block[f"{prefix}.records"]
        self._head = block[f"{prefix}.head"]
        self._tail = block[f"{prefix}.tail"]
        self._cap = int(self.records.shape[0])
        self._mask = self._cap - 1

    @property
    def capacity(self) -> int:
        return self._cap

    @property
    def lost(self) -> int:
        return int(self._tail[1])

    def pending(self) -> int:
        return int(self._head[0] - self._tail[0])

    def free(self) -> int:
        return self._cap - self.pending()

    def push(self, rows: np.ndarray) -> int:
        """Producer: append ``rows``; return how many fitted (the rest count as lost)."""
        n = int(rows.shape[0])
        head = int(self._head[0])
        room = self._cap - (head - int(self._tail[0]))
        k = min(n, room)
        if k < n:
            self._tail[1] += n - k
        if k <= 0:
            return 0
        start = head & self._mask
        first = min(k, self._cap - start)
        self.records[start : start + first] = rows[:first]
        if k > first:
            self.records[: k - first] = rows[first:k]
        self._head[0] = head + k  # publish after the payload
        return k

    def push_one(self, **fields: Any) -> bool:
        head = int(self._head[0])
        if head - int(self._tail[0]) >= self._cap:
            self._tail[1] += 1
            return False
        rec = self.records[head & self._mask]
        for key, value in fields.items():
            rec[key] = value
        self._head[0] = head + 1
        return True

    def drain(self, max_rows: int | None = None) -> np.ndarray:
        """Consumer: a copy of the records published since the last drain (oldest first)."""
        head = int(self._head[0])
        tail = int(self._tail[0])
        n = head - tail
        if max_rows is not None:
            n = min(n, max_rows)
        if n <= 0:
            return self.records[:0].copy()
        start = tail & self._mask
        first = min(n, self._cap - start)
        out = self.records[start : start + first].copy()
        if n > first:
            out = np.concatenate([out, self.records[: n - first]])
        self._tail[0] = tail + n
        return out
