"""Keep numba's on-disk cache of a perf kernel in step with the kernels it inlines.

numba keys a cached function on its own source file only (path, mtime, size):
when a callee in another file changes (``core/trading.py`` under
``perf.bench_backtest._trade_chunk``), the caller's cache still loads the old
machine code. ``refresh_cache_stamp`` bumps the caller file's mtime past its
dependencies' so the cache is rebuilt (the content is untouched; what
``daemon/kernels.py`` does for its own kernels). Development checkouts only: a
read-only install is left alone.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def refresh_cache_stamp(module_file: str, deps: Iterable[str]) -> None:
    """``deps``: paths relative to the repository (files or directories of .py files)."""
    here = Path(module_file)
    files: list[Path] = []
    for d in deps:
        p = REPO / d
        files.extend(sorted(p.glob("*.py")) if p.is_dir() else [p])
    with contextlib.suppress(OSError, ValueError):
        mine = here.stat().st_mtime
        newest = max(f.stat().st_mtime for f in files if f.exists())
        if newest > mine:
            os.utime(here, (newest + 1, newest + 1))
