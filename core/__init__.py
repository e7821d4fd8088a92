"""Pure, deterministic logic: SBE codecs, books, features, model, strategy, risk, OMS, matching.

No sockets, no clocks, no threads. Hot kernels are numba functions over preallocated
numpy arrays, each behind a thin Python facade that validates and allocates.
"""
