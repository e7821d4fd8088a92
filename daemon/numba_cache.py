"""Where the daemon's compiled kernels are cached: one directory per version of the sources.

numba caches a kernel together with the code of every kernel it calls, but it
invalidates the entry only when the kernel's *own* file changes. Our tick
kernels call into other modules (the sequencer inlines the MDP decoder, the
trading core the OMS and risk kernels, ...): after an edit of a callee, a stale
cache entry can run old code against new array layouts. The daemon therefore
caches under ``BASE/<fingerprint>``, the fingerprint being a hash of every
source file of ``core``, ``adapters`` and ``daemon`` that defines compiled
code (path, size, mtime) and of the numba and Python versions. An installed
release compiles once; a changed tree compiles afresh instead of crashing.

BASE: ``process.numba_cache_dir`` of the config, else ``$NANOARB_NUMBA_CACHE``,
else ``$NUMBA_CACHE_DIR``, else ``$XDG_CACHE_HOME/nanoarb/numba``
(``~/.cache/nanoarb/numba``). It must be chosen before numba is imported; the
processes the daemon starts inherit it.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path

PACKAGES = ("core", "adapters", "daemon")
# a file that defines compiled code (kernels, intrinsics, overloads)
_KERNEL = re.compile(rb"^\s*@(njit|jit|intrinsic|overload|generated_jit|cfunc|vectorize)\b",
                     re.M)


def source_fingerprint(root: Path | None = None) -> str:
    root = root or Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for pkg in PACKAGES:
        for p in sorted((root / pkg).rglob("*.py")):
            try:
                if not _KERNEL.search(p.read_bytes()):
                    continue  # no kernel here: an edit cannot make a cache entry stale
                st = p.stat()
            except OSError:
                continue
            h.update(f"{p.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    try:
        from importlib.metadata import version

        h.update(version("numba").encode())
    except Exception:  # metadata missing (vendored numba): the sources still key it
        pass
    h.update(sys.version.encode())
    return h.hexdigest()[:16]


def default_base() -> Path:
    for var in ("NANOARB_NUMBA_CACHE", "NUMBA_CACHE_DIR"):
        if os.environ.get(var, ""):
            return Path(os.environ[var])
    xdg = os.environ.get("XDG_CACHE_HOME", "") or str(Path.home() / ".cache")
    return Path(xdg) / "nanoarb" / "numba"


def cache_dir(base: str = "") -> Path:
    """BASE/<fingerprint> (not created)."""
    return (Path(base) if base else default_base()) / source_fingerprint()


def child_env(env: dict[str, str], base: str = "") -> dict[str, str]:
    """``env`` for a child process that should compile into the same cache as the daemon."""
    out = dict(env)
    if "NANOARB_NUMBA_CACHE" not in out:
        d = cache_dir(base)
        out["NANOARB_NUMBA_CACHE"] = str(d.parent)
        out["NUMBA_CACHE_DIR"] = str(d)
    return out


def _prune(base: Path, keep: Path, max_age_s: float = 86400.0, keep_newest: int = 4) -> None:
    """Drop caches of older source versions: unused for a day, beyond the newest few."""
    import shutil
    import time

    try:
        dirs = sorted((p for p in base.iterdir() if p.is_dir() and p != keep),
                      key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return
    now = time.time()
    for p in dirs[keep_newest:]:
        try:
            if now - p.stat().st_mtime > max_age_s:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            continue


def use_source_cache(base: str = "") -> str:
    """Point NUMBA_CACHE_DIR at BASE/<fingerprint> (created); returns it, or '' when numba
    is already imported in this process (too late: the caller keeps numba's default)."""
    if "numba" in sys.modules:
        return ""
    d = cache_dir(base)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError:
        return ""
    _prune(d.parent, keep=d)
    # children (the control plane, the venue of the demo) find the same BASE
    os.environ["NANOARB_NUMBA_CACHE"] = str(d.parent)
    os.environ["NUMBA_CACHE_DIR"] = str(d)
    return str(d)


__all__ = ["cache_dir", "child_env", "default_base", "source_fingerprint", "use_source_cache"]
