"""Pure, deterministic logic: SBE codecs, books, features, model, strategy, risk, OMS, matching.

No sockets, no clocks, no threads. Hot kernels are numba functions over preallocated
numpy arrays, each behind a thin Python facade that validates and allocates.

Numba cache: numba invalidates a cached kernel only when the kernel's own source
file changes, but our fused kernels inline kernels from other modules (the decoder
into the book kernel, ...). A change to ``core/sbe/mdp3.py`` would leave a stale
``_on_packet`` in the cache. So, unless NUMBA_CACHE_DIR is set (the daemon sets it
from ``process.numba_cache_dir``), the cache lives in a directory keyed on a hash of
every source file under ``core/``: any change starts a fresh cache (about 1 ms to
hash at import).
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path


def _default_numba_cache_dir() -> str:
    root = Path(__file__).resolve().parent
    h = hashlib.sha1(usedforsecurity=False)
    for p in sorted(root.rglob("*.py")):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "nanoarb" / "numba" / h.hexdigest()[:16])


if "NUMBA_CACHE_DIR" not in os.environ:
    os.environ["NUMBA_CACHE_DIR"] = _default_numba_cache_dir()
    if "numba" in sys.modules:
        # numba read its config before us (pytest's filterwarnings imports it first):
        # kernels are decorated after this point, so setting the config still counts.
        from numba.core import config as _numba_config

        _numba_config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]  # type: ignore[attr-defined]
