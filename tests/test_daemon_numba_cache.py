"""The daemon's numba cache directory follows the kernel sources."""

from __future__ import annotations

import os
from pathlib import Path

from daemon.numba_cache import child_env, source_fingerprint


def _tree(root: Path) -> None:
    for pkg in ("core", "adapters", "daemon"):
        (root / pkg).mkdir(parents=True)
    kernel = "from numba import njit\n\n@njit\ndef f(x):\n    return x\n"
    (root / "core" / "k.py").write_text(kernel)
    (root / "daemon" / "plain.py").write_text("x = 1\n")


def test_fingerprint_changes_with_kernel_sources_only(tmp_path: Path) -> None:
    _tree(tmp_path)
    fp = source_fingerprint(tmp_path)
    assert source_fingerprint(tmp_path) == fp
    plain = tmp_path / "daemon" / "plain.py"
    plain.write_text("import numba  # but no kernel in this file\n")
    assert source_fingerprint(tmp_path) == fp
    k = tmp_path / "core" / "k.py"
    k.write_text("from numba import njit\n\n@njit(cache=True)\ndef f(x):\n    return x\n")
    fp2 = source_fingerprint(tmp_path)
    assert fp2 != fp
    st = k.stat()
    os.utime(k, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # touched
    assert source_fingerprint(tmp_path) != fp2


def test_child_env_shares_the_base() -> None:
    env = child_env({"PATH": "/bin"}, base="/tmp/nb-base")
    assert env["NANOARB_NUMBA_CACHE"] == "/tmp/nb-base"
    assert env["NUMBA_CACHE_DIR"].startswith("/tmp/nb-base/")
    assert child_env({"NANOARB_NUMBA_CACHE": "/x"}) == {"NANOARB_NUMBA_CACHE": "/x"}
