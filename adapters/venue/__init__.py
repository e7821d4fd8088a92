"""The exchange simulator (``nanoarb venue``): matching engines behind an iLink 3 acceptor,
publishing MDP 3.0 incrementals (feeds A and B), a snapshot loop and a definition loop.

Modules: ``config`` (TOML), ``encoder`` (njit MDP 3.0 incremental encoder),
``publisher`` (packets, feeds, loops), ``flow`` (background order flow),
``orders`` (iLink 3 order handling), ``faults``, ``latency``, ``control`` and
``venue`` (the process).
"""

# ``core`` must be imported before numba: it points NUMBA_CACHE_DIR at a cache keyed on
# the core sources (see core/__init__.py); importing numba first would keep numba's
# default cache next to the sources, where kernels inlined across modules go stale.
import core  # noqa: F401
