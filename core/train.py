"""Training: labels, the SSM and MLP models, cross-validation and ONNX export.

Pipeline (``nanoarb train``): market-data events -> ``core.features.replay_features``
(the live feature kernels) -> labels -> fit -> ONNX file + JSON report.

Labels
    For each feature row of an instrument and each horizon h (in completed events
    of that instrument), the mid move ``(mid[t+h] - mid[t]) / tick`` is classed
    down / flat / up with ``|move| <= flat_ticks`` as flat. Rows whose future is
    beyond the data (or whose mid is undefined) have no label for that horizon.

``ssm`` (default): a diagonal linear state-space model in step form
    z = (x - mean) / std;  for each time scale k with decay a_k:
    s_k <- a_k * s_k + (1 - a_k) * z  (a_0 = 0 keeps the current z itself)
    so the state holds F * K values, exponentially weighted averages of every
    feature over a few time scales (``taus``, in events). The readout is a
    multinomial logistic regression per horizon on the standardised state,
    fitted by Böhning's bound (the Hessian is replaced by a fixed upper bound
    0.5 (I - 11'/3) ⊗ X'X, so each iteration is one gradient and one solve
    with a fixed matrix; the loss decreases monotonically). Exported as three
    Gemm nodes: ``carry = state_in @ diag(a) + c``, ``state_out = features @ B +
    carry``, ``logits = state_out @ W + b`` (standardisation folded into B, c,
    W, b).

``mlp``: stateless, z -> Dense(hidden, ReLU) -> logits, trained with Adam on
    the summed cross-entropy of the horizons. Exported as Gemm, Relu, Gemm.

Cross-validation (reported as JSON, per horizon: accuracy and log-loss of the
model and of the naive baseline that predicts the training class priors):

* walk-forward: the rows are cut into ``folds + 1`` time blocks; fold i trains
  on everything before block i (purged: no training label may reach into the
  test block) and tests on block i;
* purged k-fold: each block is the test set once; training rows whose label
  window overlaps the test block are purged, and an embargo drops the rows after
  the block until the test block's labels have all expired (max horizon).

Everything is deterministic for a given seed (data, initialisation, minibatches).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numba import njit

from core.feature_spec import feature_spec as running_feature_spec
from core.model import (
    CLASSES,
    CONTRACT_VERSION,
    INPUT_FEATURES,
    INPUT_STATE,
    META_ALPHA_HORIZON,
    META_CLASS_MEAN,
    META_CLASSES,
    META_CONTRACT,
    META_FEATURE_SPEC,
    META_FLAT_TICKS,
    META_HORIZONS,
    META_KIND,
    META_OUTPUTS,
    META_STATE_SIZE,
    META_TRAINING,
    N_CLASSES,
    OUTPUT_LOGITS,
    OUTPUT_STATE,
    _ssm_scan,
)

DEFAULT_HORIZONS = (10, 30, 100)
DEFAULT_TAUS = (0.0, 3.0, 10.0, 30.0, 100.0)
OPSET = 17
IR_VERSION = 8
NO_LABEL = -1


@dataclass(frozen=True)
class TrainConfig:
    kind: str = "ssm"
    horizons: tuple[int, ...] = DEFAULT_HORIZONS
    flat_ticks: float = 0.25
    taus: tuple[float, ...] = DEFAULT_TAUS  # ssm time scales in events (0 = current value)
    l2: float = 1e-2  # ridge penalty of the readout per row (inputs standardised)
    max_iter: int = 80
    hidden: int = 32  # mlp
    epochs: int = 4  # mlp
    batch_size: int = 512  # mlp
    learning_rate: float = 2e-3  # mlp
    alpha_horizon: int = 0
    folds: int = 4
    seed: int = 7

    def __post_init__(self) -> None:
        if self.kind not in ("ssm", "mlp"):
            raise ValueError(f"kind must be ssm or mlp, not {self.kind!r}")
        if not self.horizons or any(h <= 0 for h in self.horizons):
            raise ValueError("horizons must be positive event counts")
        if list(self.horizons) != sorted(set(self.horizons)):
            raise ValueError("horizons must be strictly increasing")
        if not 0 <= self.alpha_horizon < len(self.horizons):
            raise ValueError("alpha_horizon must index a horizon")
        if any(t < 0 for t in self.taus) or not self.taus:
            raise ValueError("taus must be >= 0")
        if self.folds < 2:
            raise ValueError("folds must be >= 2")


# --------------------------------------------------------------------------
# dataset: features + labels
# --------------------------------------------------------------------------


@dataclass
class Dataset:
    """Feature rows in time order with their labels; ``group`` = security_id."""

    features: np.ndarray  # float32 [n, F]
    group: np.ndarray  # int64 [n]
    labels: np.ndarray  # int8 [n, H]: 0 down, 1 flat, 2 up, -1 unknown
    moves: np.ndarray  # float64 [n, H]: mid move in ticks (NaN when unknown)
    label_end: np.ndarray  # int64 [n]: row index where the longest label window ends
    horizons: tuple[int, ...]
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.features.shape[0])


def make_labels(group: np.ndarray, mid: np.ndarray, tick: np.ndarray, horizons: Sequence[int],
                flat_ticks: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels [n, H], moves in ticks [n, H] and the label-window end row [n].

    ``group``, ``mid`` (mantissa units) and ``tick`` (mantissa per tick) are per row;
    the horizon counts rows of the same group.
    """
    n = group.shape[0]
    H = len(horizons)
    labels = np.full((n, H), NO_LABEL, np.int8)
    moves = np.full((n, H), np.nan)
    label_end = np.full(n, n, np.int64)
    for g in np.unique(group):
        idx = np.flatnonzero(group == g)
        m = mid[idx]
        tk = tick[idx]
        for j, h in enumerate(horizons):
            if idx.size <= h:
                continue
            mv = (m[h:] - m[:-h]) / tk[:-h]
            ok = np.isfinite(mv)
            lab = np.where(mv > flat_ticks, 2, np.where(mv < -flat_ticks, 0, 1)).astype(np.int8)
            rows = idx[:-h]
            labels[rows[ok], j] = lab[ok]
            moves[rows[ok], j] = mv[ok]
        hmax = max(horizons)
        if idx.size > hmax:
            label_end[idx[:-hmax]] = idx[hmax:]
    return labels, moves, label_end


def build_dataset(replayed: dict[str, np.ndarray], tick_size: dict[int, int],
                  horizons: Sequence[int] = DEFAULT_HORIZONS, flat_ticks: float = 0.25) -> Dataset:
    """Labels for the output of ``replay_features`` (one row per completed event)."""
    sid = np.asarray(replayed["security_id"]).astype(np.int64)
    mid = np.asarray(replayed["mid"], np.float64)
    X = np.array(replayed["features"], dtype=np.float32, order="C")
    bad = ~np.isfinite(X)
    X[bad] = 0.0  # live, such a row halts the instrument; in training it must not poison the fit
    missing = sorted(set(np.unique(sid).tolist()) - set(tick_size))
    if missing:
        raise ValueError(f"no tick size for security_id {missing}")
    tick = np.array([tick_size[int(s)] for s in sid], np.float64) if sid.size else np.zeros(0)
    labels, moves, label_end = make_labels(sid, mid, tick, horizons, flat_ticks)
    return Dataset(features=X, group=sid, labels=labels, moves=moves, label_end=label_end,
                   horizons=tuple(horizons), info={"nonfinite_features": int(bad.sum())})


def concat_datasets(parts: Sequence[Dataset]) -> Dataset:
    """Several sources one after the other (state and labels never cross a boundary)."""
    if len(parts) == 1:
        return parts[0]
    off = 0
    ends = []
    groups = []
    for k, p in enumerate(parts):
        ends.append(p.label_end + off)
        # distinct groups per source: recurrent state restarts at each source
        groups.append(p.group + (k << 32))
        off += len(p)
    return Dataset(
        features=np.concatenate([p.features for p in parts]), group=np.concatenate(groups),
        labels=np.concatenate([p.labels for p in parts]),
        moves=np.concatenate([p.moves for p in parts]), label_end=np.concatenate(ends),
        horizons=parts[0].horizons)


# --------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------


@dataclass
class Fitted:
    """A fitted model in float64 numpy form (the exact function the ONNX file computes)."""

    kind: str
    horizons: tuple[int, ...]
    mean: np.ndarray  # [F]
    std: np.ndarray  # [F]
    params: dict[str, np.ndarray]
    class_mean_ticks: np.ndarray  # [H, 3]
    flat_ticks: float
    alpha_horizon: int
    state_size: int = 0
    train_info: dict[str, Any] = field(default_factory=dict)

    def step_reference(self, x: np.ndarray,
                       state: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """One step in plain float64 numpy (the unfolded model): (logits [3H], new state)."""
        z = (np.asarray(x, np.float64) - self.mean) / self.std
        p = self.params
        if self.kind == "ssm":
            a = p["decay"]  # [S]
            s_prev = np.zeros(self.state_size) if state is None else np.asarray(state, np.float64)
            s = a * s_prev + (1.0 - a) * np.tile(z, len(a) // len(z))
            u = (s - p["state_mean"]) / p["state_std"]
            return u @ p["W"] + p["b"], s
        h = np.maximum(z @ p["W1"] + p["b1"], 0.0)
        return h @ p["W2"] + p["b2"], None


def _decays(taus: Sequence[float], F: int) -> np.ndarray:
    a = np.array([0.0 if t == 0 else math.exp(-1.0 / t) for t in taus])
    return np.repeat(a, F)  # state index k*F + f: scale-major


def ssm_states(X: np.ndarray, group: np.ndarray, mean: np.ndarray, std: np.ndarray,
               taus: Sequence[float]) -> np.ndarray:
    """The SSM state after each row (float32, as the exported model computes it)."""
    F = X.shape[1]
    a = _decays(taus, F)
    Z = ((X.astype(np.float64) - mean) / std)
    U = (np.tile(Z, len(taus)) * (1.0 - a)).astype(np.float32)
    _, gid = np.unique(group, return_inverse=True)
    states = np.empty_like(U)
    last = np.zeros((int(gid.max()) + 1 if gid.size else 1, U.shape[1]), np.float32)
    _ssm_scan(U, a.astype(np.float32), gid.astype(np.int64), states, last)
    return states


def _softmax(L: np.ndarray) -> np.ndarray:
    L = L - L.max(axis=1, keepdims=True)
    E = np.exp(L)
    return E / E.sum(axis=1, keepdims=True)


def fit_multinomial(X: np.ndarray, Y: np.ndarray, l2: float, max_iter: int = 80,
                    tol: float = 1e-6) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Multinomial logistic regressions (3 classes) for several label columns at once.

    X [n, D] (standardised), Y [n, H] in {0,1,2} or -1 (no label). Returns W [D, 3H],
    b [3H] and info. Column h minimises ``sum_i -log p(y_ih) + l2 * n * |W_h|^2 / 2``
    (bias unpenalised) by Böhning's bound: the Hessian is bounded by the fixed
    0.5 (I - 11'/3) kron X'X, so each iteration is one pass over the rows (a numba
    kernel, single-threaded and deterministic) and one product with a fixed inverse;
    the steps are over-relaxed (x1.8) while the loss keeps falling.
    """
    n, D = X.shape
    H = Y.shape[1]
    K = N_CLASSES
    Xb = np.ascontiguousarray(np.hstack([X, np.ones((n, 1))]), dtype=np.float64)
    YY = np.ascontiguousarray(Y, dtype=np.int64)
    D1 = D + 1
    WT = np.zeros((H * K, D1))  # transposed: row h*3+k holds class k of horizon h
    for h in range(H):
        y = YY[:, h]
        counts = np.bincount(y[y >= 0], minlength=K).astype(np.float64)
        WT[h * K:(h + 1) * K, -1] = np.log((counts + 1.0) / (counts.sum() + K))
    pen = np.full(D1, l2 * n)
    pen[-1] = 1e-9 * n
    Bc = 0.5 * (np.eye(K) - np.ones((K, K)) / K) + 1e-9 * np.eye(K)
    Binv = _spd_inverse(np.kron(Bc, _gram(Xb)) + np.kron(np.eye(K), np.diag(pen)))
    gT = np.zeros_like(WT)
    nll = np.zeros(H)
    omega = 1.8
    prev_loss = np.inf
    prev_W = WT.copy()
    prev_step = np.zeros_like(WT)
    loss = np.inf
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 - reported
        _mnl_gradient(Xb, YY, WT, gT, nll)
        loss = float(nll.sum()) + 0.5 * float(np.sum(pen[None, :] * WT**2))
        if loss > prev_loss and omega > 1.0:
            # over-relaxation overshot: redo the last step plainly and stop accelerating
            omega = 1.0
            WT[:] = prev_W - prev_step
            continue
        gT += pen[None, :] * WT
        step = np.empty_like(WT)
        for h in range(H):
            g = gT[h * K:(h + 1) * K].reshape(-1)  # class-major, as kron(Bc, G) is laid out
            step[h * K:(h + 1) * K] = (Binv @ g).reshape(K, D1)
        if prev_loss - loss <= tol * abs(loss):
            break
        prev_loss, prev_W, prev_step = loss, WT.copy(), step
        WT -= omega * step
    info = {"iterations": it, "loss_per_row": [float(v / max(n, 1)) for v in nll]}
    return WT[:, :-1].T.copy(), WT[:, -1].copy(), info


@njit(cache=True)
def _mnl_gradient(X, Y, WT, gT, nll):
    # per label column h: softmax(X @ W_h) - onehot(y_h) accumulated into gT = (P - Y)'X;
    # nll[h] = -sum log p(y_h). Rows without a label (-1) are skipped for that column.
    n, D = X.shape
    H = Y.shape[1]
    gT[:, :] = 0.0
    nll[:] = 0.0
    z = np.empty(3)
    for i in range(n):
        x = X[i]
        for h in range(H):
            y = Y[i, h]
            if y < 0:
                continue
            m = -np.inf
            for k in range(3):
                w = WT[3 * h + k]
                acc = 0.0
                for d in range(D):
                    acc += x[d] * w[d]
                z[k] = acc
                if acc > m:
                    m = acc
            tot = 0.0
            for k in range(3):
                z[k] = math.exp(z[k] - m)
                tot += z[k]
            for k in range(3):
                p = z[k] / tot
                if k == y:
                    nll[h] -= math.log(max(p, 1e-300))
                    p -= 1.0
                g = gT[3 * h + k]
                for d in range(D):
                    g[d] += p * x[d]


@njit(cache=True)
def _gram(X):
    n, D = X.shape
    G = np.zeros((D, D))
    for i in range(n):
        for a in range(D):
            xa = X[i, a]
            for b in range(a, D):
                G[a, b] += xa * X[i, b]
    for a in range(D):
        for b in range(a):
            G[a, b] = G[b, a]
    return G


@njit(cache=True)
def _spd_inverse(A):
    # Cholesky A = L L', then solve for the identity (no LAPACK: numba's needs scipy)
    n = A.shape[0]
    L = np.zeros((n, n))
    for j in range(n):
        s = A[j, j]
        for k in range(j):
            s -= L[j, k] * L[j, k]
        L[j, j] = math.sqrt(s)
        for i in range(j + 1, n):
            t = A[i, j]
            for k in range(j):
                t -= L[i, k] * L[j, k]
            L[i, j] = t / L[j, j]
    inv = np.zeros((n, n))
    y = np.empty(n)
    for c in range(n):
        for i in range(n):  # L y = e_c
            t = 1.0 if i == c else 0.0
            for k in range(i):
                t -= L[i, k] * y[k]
            y[i] = t / L[i, i]
        for i in range(n - 1, -1, -1):  # L' x = y
            t = y[i]
            for k in range(i + 1, n):
                t -= L[k, i] * inv[k, c]
            inv[i, c] = t / L[i, i]
    return inv


def _class_means(moves: np.ndarray, labels: np.ndarray) -> np.ndarray:
    H = labels.shape[1]
    cm = np.zeros((H, N_CLASSES))
    for j in range(H):
        for c in range(N_CLASSES):
            sel = labels[:, j] == c
            cm[j, c] = float(np.mean(moves[sel, j])) if np.any(sel) else 0.0
    return cm


def _feature_stats(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = X.astype(np.float64).mean(axis=0)
    std = X.astype(np.float64).std(axis=0)
    std = np.where(std > 1e-9, std, 1.0)  # constant feature: pass through unscaled
    return mean, std


def fit(ds: Dataset, cfg: TrainConfig, rows: np.ndarray | None = None) -> Fitted:
    """Fit ``cfg.kind`` on ``rows`` (default all) of ``ds``."""
    idx = np.arange(len(ds)) if rows is None else np.asarray(rows)
    if idx.size == 0:
        raise ValueError("no training rows")
    mean, std = _feature_stats(ds.features[idx])
    cm = _class_means(ds.moves[idx], ds.labels[idx])
    if cfg.kind == "ssm":
        return _fit_ssm(ds, cfg, idx, mean, std, cm)
    return _fit_mlp(ds, cfg, idx, mean, std, cm)


def _fit_ssm(ds: Dataset, cfg: TrainConfig, idx: np.ndarray, mean: np.ndarray,
             std: np.ndarray, cm: np.ndarray) -> Fitted:
    F = ds.features.shape[1]
    states = ssm_states(ds.features, ds.group, mean, std, cfg.taus).astype(np.float64)
    S = states.shape[1]
    s_mean = states[idx].mean(axis=0)
    s_std = states[idx].std(axis=0)
    s_std = np.where(s_std > 1e-9, s_std, 1.0)
    U = (states - s_mean) / s_std
    W, b, info = fit_multinomial(U[idx], ds.labels[idx], cfg.l2, cfg.max_iter)
    return Fitted(kind="ssm", horizons=ds.horizons, mean=mean, std=std,
                  params={"decay": _decays(cfg.taus, F), "state_mean": s_mean, "state_std": s_std,
                          "W": W, "b": b, "taus": np.asarray(cfg.taus, np.float64)},
                  class_mean_ticks=cm, flat_ticks=cfg.flat_ticks, alpha_horizon=cfg.alpha_horizon,
                  state_size=S, train_info={"readout": info})


def _fit_mlp(ds: Dataset, cfg: TrainConfig, idx: np.ndarray, mean: np.ndarray,
             std: np.ndarray, cm: np.ndarray) -> Fitted:
    rng = np.random.default_rng(cfg.seed)
    Z = (ds.features[idx].astype(np.float64) - mean) / std
    Y = ds.labels[idx].astype(np.int64)
    n, F = Z.shape
    H = Y.shape[1]
    h = cfg.hidden
    p = {"W1": rng.normal(0, math.sqrt(2.0 / F), (F, h)), "b1": np.zeros(h),
         "W2": rng.normal(0, math.sqrt(1.0 / h), (h, N_CLASSES * H)), "b2": np.zeros(N_CLASSES * H)}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(v) for k, v in p.items()}
    b1, b2, eps, lr = 0.9, 0.999, 1e-8, cfg.learning_rate
    t = 0
    for _ in range(cfg.epochs):
        order = rng.permutation(n)
        for s in range(0, n, cfg.batch_size):
            bi = order[s:s + cfg.batch_size]
            z = Z[bi]
            a1 = z @ p["W1"] + p["b1"]
            h1 = np.maximum(a1, 0.0)
            L = h1 @ p["W2"] + p["b2"]
            dL = np.zeros_like(L)
            for j in range(H):
                yj = Y[bi, j]
                ok = yj != NO_LABEL
                Pj = _softmax(L[:, 3 * j:3 * j + 3])
                Pj[ok, yj[ok]] -= 1.0
                Pj[~ok] = 0.0
                dL[:, 3 * j:3 * j + 3] = Pj / max(1, bi.size)
            g = {"W2": h1.T @ dL, "b2": dL.sum(0)}
            dh = (dL @ p["W2"].T) * (a1 > 0)
            g["W1"] = z.T @ dh
            g["b1"] = dh.sum(0)
            t += 1
            for k in p:
                m[k] = b1 * m[k] + (1 - b1) * g[k]
                v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
                p[k] -= lr * (m[k] / (1 - b1**t)) / (np.sqrt(v[k] / (1 - b2**t)) + eps)
    return Fitted(kind="mlp", horizons=ds.horizons, mean=mean, std=std, params=p,
                  class_mean_ticks=cm, flat_ticks=cfg.flat_ticks, alpha_horizon=cfg.alpha_horizon,
                  train_info={"steps": t})


def predict_logits(fitted: Fitted, ds: Dataset) -> np.ndarray:
    """Logits [n, 3H] of every row of ``ds`` (float64, in row order with per-group state)."""
    p = fitted.params
    if fitted.kind == "ssm":
        states = ssm_states(ds.features, ds.group, fitted.mean, fitted.std,
                            tuple(p["taus"])).astype(np.float64)
        return ((states - p["state_mean"]) / p["state_std"]) @ p["W"] + p["b"]
    Z = (ds.features.astype(np.float64) - fitted.mean) / fitted.std
    return np.maximum(Z @ p["W1"] + p["b1"], 0.0) @ p["W2"] + p["b2"]


# --------------------------------------------------------------------------
# evaluation and cross-validation
# --------------------------------------------------------------------------


def score(logits: np.ndarray, labels: np.ndarray, prior: np.ndarray) -> dict[str, Any]:
    """Accuracy and log-loss per horizon, model vs the class-prior baseline."""
    out: list[dict[str, Any]] = []
    for j in range(labels.shape[1]):
        ok = labels[:, j] != NO_LABEL
        y = labels[ok, j].astype(np.int64)
        n = int(y.size)
        if n == 0:
            out.append({"n": 0})
            continue
        P = _softmax(logits[ok, 3 * j:3 * j + 3])
        ll = float(-np.mean(np.log(np.maximum(P[np.arange(n), y], 1e-15))))
        acc = float(np.mean(P.argmax(1) == y))
        pr = np.clip(prior[j], 1e-15, 1.0)
        base_ll = float(-np.mean(np.log(pr[y])))
        base_acc = float(np.mean(y == int(np.argmax(pr))))
        out.append({"n": n, "accuracy": acc, "log_loss": ll, "baseline_accuracy": base_acc,
                    "baseline_log_loss": base_ll, "log_loss_gain": base_ll - ll,
                    "class_freq": np.bincount(y, minlength=3).tolist()})
    return {"horizons": out}


def _priors(labels: np.ndarray) -> np.ndarray:
    pr = np.zeros((labels.shape[1], N_CLASSES))
    for j in range(labels.shape[1]):
        y = labels[:, j]
        c = np.bincount(y[y != NO_LABEL].astype(np.int64), minlength=N_CLASSES).astype(np.float64)
        pr[j] = (c + 1.0) / (c.sum() + N_CLASSES)
    return pr


def cv_splits(ds: Dataset, folds: int, scheme: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train rows, test rows) per fold for ``scheme`` "walk_forward" or "purged_kfold"."""
    n = len(ds)
    rows = np.arange(n)
    splits = []
    if scheme == "walk_forward":
        edges = np.linspace(0, n, folds + 2).astype(np.int64)
        for i in range(1, folds + 1):
            a, b = edges[i], edges[i + 1]
            train = rows[(rows < a) & (ds.label_end < a)]  # purge labels reaching the test block
            splits.append((train, rows[a:b]))
    elif scheme == "purged_kfold":
        edges = np.linspace(0, n, folds + 1).astype(np.int64)
        for i in range(folds):
            a, b = edges[i], edges[i + 1]
            embargo_end = int(ds.label_end[a:b].max()) if b > a else b
            before = (rows < a) & (ds.label_end < a)
            after = rows > max(b - 1, embargo_end)
            splits.append((rows[before | after], rows[a:b]))
    else:
        raise ValueError(f"unknown scheme {scheme!r}")
    return splits


def _mean_scores(folds: list[dict[str, Any]], H: int) -> list[dict[str, float]]:
    agg: list[dict[str, float]] = []
    for j in range(H):
        rows = [f["horizons"][j] for f in folds if f["horizons"][j].get("n", 0) > 0]
        if not rows:
            agg.append({"n": 0.0})
            continue
        w = np.array([r["n"] for r in rows], np.float64)
        d: dict[str, float] = {"n": float(w.sum())}
        for k in ("accuracy", "log_loss", "baseline_accuracy", "baseline_log_loss",
                  "log_loss_gain"):
            d[k] = float(np.sum(w * np.array([r[k] for r in rows])) / w.sum())
        agg.append(d)
    return agg


def cross_validate(ds: Dataset, cfg: TrainConfig) -> dict[str, Any]:
    """Walk-forward and purged k-fold scores (per fold and row-weighted means)."""
    report: dict[str, Any] = {}
    for scheme in ("walk_forward", "purged_kfold"):
        folds = []
        for k, (tr, te) in enumerate(cv_splits(ds, cfg.folds, scheme)):
            if tr.size == 0 or te.size == 0:
                continue
            f = fit(ds, cfg, tr)
            L = predict_logits(f, ds)[te]
            s = score(L, ds.labels[te], _priors(ds.labels[tr]))
            s.update({"fold": k, "n_train": int(tr.size), "n_test": int(te.size),
                      "test_rows": [int(te[0]), int(te[-1]) + 1]})
            folds.append(s)
        report[scheme] = {"folds": folds, "mean": _mean_scores(folds, len(ds.horizons))}
    return report


# --------------------------------------------------------------------------
# ONNX export
# --------------------------------------------------------------------------


def _metadata(f: Fitted, outputs: Sequence[str], training: dict[str, Any]) -> dict[str, str]:
    return {
        META_CONTRACT: json.dumps(CONTRACT_VERSION),
        META_FEATURE_SPEC: json.dumps(running_feature_spec()),
        META_KIND: f.kind,
        META_HORIZONS: json.dumps(list(f.horizons)),
        META_CLASSES: json.dumps(list(CLASSES)),
        META_OUTPUTS: json.dumps(sorted(outputs)),
        META_STATE_SIZE: json.dumps(f.state_size),
        META_ALPHA_HORIZON: json.dumps(f.alpha_horizon),
        META_CLASS_MEAN: json.dumps(np.round(f.class_mean_ticks, 9).tolist()),
        META_FLAT_TICKS: json.dumps(f.flat_ticks),
        META_TRAINING: json.dumps(training, sort_keys=True),
    }


def export_onnx(f: Fitted, training: dict[str, Any] | None = None) -> bytes:
    """Serialise ``f`` as a contract-conforming ONNX model (deterministic bytes)."""
    from onnx import TensorProto, helper, numpy_helper

    F = f.mean.shape[0]
    H3 = N_CLASSES * len(f.horizons)
    p = f.params

    def init(name: str, a: np.ndarray) -> Any:
        return numpy_helper.from_array(np.ascontiguousarray(a, np.float32), name)

    def vi(name: str, n: int) -> Any:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, n])

    if f.kind == "ssm":
        S = f.state_size
        a = p["decay"]
        K = S // F
        # z = x * inv_std - mean * inv_std; s_new = a*s + (1-a)*z  (per scale-major index)
        inv = np.tile(1.0 / f.std, K)
        B = np.zeros((F, S))
        B[np.tile(np.arange(F), K), np.arange(S)] = (1.0 - a) * inv
        c = -(1.0 - a) * np.tile(f.mean, K) * inv
        W = p["W"] / p["state_std"][:, None]
        b = p["b"] - (p["state_mean"] / p["state_std"]) @ p["W"]
        nodes = [
            helper.make_node("Gemm", [INPUT_STATE, "ssm_decay", "ssm_offset"], ["carry"],
                             name="decay"),
            helper.make_node("Gemm", [INPUT_FEATURES, "ssm_input", "carry"], [OUTPUT_STATE],
                             name="drive"),
            helper.make_node("Gemm", [OUTPUT_STATE, "readout_w", "readout_b"], [OUTPUT_LOGITS],
                             name="readout"),
        ]
        inits = [init("ssm_decay", np.diag(a)), init("ssm_offset", c), init("ssm_input", B),
                 init("readout_w", W), init("readout_b", b)]
        inputs = [vi(INPUT_FEATURES, F), vi(INPUT_STATE, S)]
        outputs = [vi(OUTPUT_LOGITS, H3), vi(OUTPUT_STATE, S)]
    else:
        W1 = p["W1"] / f.std[:, None]
        b1 = p["b1"] - (f.mean / f.std) @ p["W1"]
        nodes = [
            helper.make_node("Gemm", [INPUT_FEATURES, "mlp_w1", "mlp_b1"], ["hidden_pre"],
                             name="dense1"),
            helper.make_node("Relu", ["hidden_pre"], ["hidden"], name="relu"),
            helper.make_node("Gemm", ["hidden", "mlp_w2", "mlp_b2"], [OUTPUT_LOGITS],
                             name="dense2"),
        ]
        inits = [init("mlp_w1", W1), init("mlp_b1", b1), init("mlp_w2", p["W2"]),
                 init("mlp_b2", p["b2"])]
        inputs = [vi(INPUT_FEATURES, F)]
        outputs = [vi(OUTPUT_LOGITS, H3)]
    graph = helper.make_graph(nodes, f"nanoarb_{f.kind}", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="nanoarb", producer_version="1")
    model.ir_version = IR_VERSION
    meta = _metadata(f, [o.name for o in outputs], training or {})
    for k in sorted(meta):
        e = model.metadata_props.add()
        e.key, e.value = k, meta[k]
    return bytes(model.SerializeToString(deterministic=True))


# --------------------------------------------------------------------------
# end to end
# --------------------------------------------------------------------------


@dataclass
class TrainResult:
    onnx: bytes
    fitted: Fitted
    report: dict[str, Any]


def train(ds: Dataset, cfg: TrainConfig, sources: Sequence[str] = (),
          command: str | None = None, cv: bool = True) -> TrainResult:
    """Cross-validate, fit on all rows, export. The report is JSON-serialisable."""
    if tuple(ds.horizons) != tuple(cfg.horizons):
        raise ValueError(f"dataset horizons {ds.horizons} differ from the config's {cfg.horizons}")
    cv_report = cross_validate(ds, cfg) if cv else {}
    fitted = fit(ds, cfg)
    in_sample = score(predict_logits(fitted, ds), ds.labels, _priors(ds.labels))
    cfg_d = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}
    training = {"sources": list(sources), "rows": len(ds), "config": cfg_d,
                "cv_summary": {
                    k: [{"accuracy": round(m.get("accuracy", float("nan")), 4),
                         "baseline_accuracy": round(m.get("baseline_accuracy", float("nan")), 4),
                         "log_loss_gain": round(m.get("log_loss_gain", float("nan")), 5)}
                        for m in v["mean"]] for k, v in cv_report.items()}}
    blob = export_onnx(fitted, training)
    report = {
        "model": {"kind": cfg.kind, "horizons": list(cfg.horizons), "state_size": fitted.state_size,
                  "n_features": int(ds.features.shape[1]), "flat_ticks": cfg.flat_ticks,
                  "class_mean_ticks": fitted.class_mean_ticks.round(6).tolist(),
                  "alpha_horizon": cfg.alpha_horizon, "fit": fitted.train_info},
        "feature_spec": running_feature_spec(),
        "data": {"sources": list(sources), "rows": len(ds), **ds.info,
                 "labelled": [int(np.sum(ds.labels[:, j] != NO_LABEL))
                              for j in range(len(ds.horizons))]},
        "config": cfg_d,
        "command": command,
        "cross_validation": cv_report,
        "in_sample": in_sample,
    }
    return TrainResult(onnx=blob, fitted=fitted, report=report)
