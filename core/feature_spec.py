"""The feature specification: the contract between the feature kernels and the model.

The model is trained on, and validated against, exactly this ordered list of
names and this version. Any change to a feature's meaning, order or scaling
bumps ``FEATURE_SPEC_VERSION``; a model trained on another version is refused at
load time (see ``core.model``).

All features are scale-free (ticks, ratios, log-seconds) so one model can serve
instruments with different price levels.
"""

from __future__ import annotations

FEATURE_SPEC_VERSION = 1

FEATURE_NAMES: tuple[str, ...] = (
    "mid_change_ticks",  # mid(t) - mid(t-1 completed event), in ticks
    "microprice_offset_ticks",  # microprice - mid, in ticks
    "spread_ticks",  # best ask - best bid, in ticks
    "imbalance_l1",  # (bq - aq) / (bq + aq) at level 1, in [-1, 1]
    "imbalance_depth",  # depth-weighted multi-level imbalance, in [-1, 1]
    "ofi",  # order-flow imbalance over the top levels (Cont-Kukanov-Stoikov), EWMA, in lots
    "vpin",  # volume-synchronised probability of informed trading, [0, 1]
    "trade_flow_fast",  # signed traded volume, short EWMA window, in lots
    "trade_flow_slow",  # signed traded volume, long EWMA window, in lots
    "realized_vol_ticks",  # sqrt of EWMA of squared mid changes, in ticks
    "log_time_since_trade",  # log1p(seconds since the last trade)
)

N_FEATURES = len(FEATURE_NAMES)

FEATURE_INDEX = {name: i for i, name in enumerate(FEATURE_NAMES)}


def feature_spec() -> dict[str, object]:
    """The spec as stored in model metadata: ``{"version": int, "names": [...]}``."""
    return {"version": FEATURE_SPEC_VERSION, "names": list(FEATURE_NAMES)}
