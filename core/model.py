"""The model: ONNX contract, validation, hot-path inference and batch inference.

The contract
------------
A model is an ONNX file. Its graph takes

* ``features``  float32 [1, F]: one row of the running feature vector, in the
  order of ``core.feature_spec.FEATURE_NAMES``;
* ``state_in``  float32 [1, S]: only for recurrent models;

and produces

* ``alpha``     float32 [1, 1]: signed expected mid move in ticks, and/or
* ``logits``    float32 [1, 3H]: per horizon h, logits of (down, flat, up);
* ``state_out`` float32 [1, S]: only for recurrent models (the next ``state_in``).

Its ``metadata_props`` carry, as strings (JSON where structured):

==================  ==============================================================
contract_version    ``"1"``
feature_spec        ``{"version": int, "names": [...]}``: what it was trained on
model_kind          ``"ssm"``, ``"mlp"`` or any other name
horizons            ``[h1, h2, h3]``: label horizons, in completed events
classes             ``["down", "flat", "up"]``
outputs             the output names, e.g. ``["logits", "state_out"]``
state_size          S (0 for a stateless model)
alpha_horizon       index of the horizon whose probabilities give alpha
class_mean_ticks    ``[[mean move | down, flat, up] per horizon]``, in ticks
flat_ticks          moves with ``|move| <= flat_ticks`` are labelled flat
training            free-form JSON (data, seed, command, cross-validation summary)
==================  ==============================================================

A model without an ``alpha`` output gets its alpha derived from its logits:
``sum_c softmax(logits[alpha_horizon])_c * class_mean_ticks[alpha_horizon][c]``.
The shipped models do this: two extra ONNX nodes (Softmax, MatMul) cost ~1 µs per
call in onnxruntime, the derivation in the step kernel costs ~20 ns.

:func:`load_model` checks all of it against the running feature specification
and raises :class:`ModelContractError` listing every difference.

Hot path
--------
:class:`ModelRunner` owns preallocated numpy buffers: ``features`` [slots, F]
(the feature kernel writes a row in place), ``state`` [slots, 2, S] and ``out``
[slots, 3H + 1] (logits then alpha). Each slot (instrument) has two IOBindings,
(state[0] -> state[1]) and (state[1] -> state[0]); a step runs the binding of the
current parity and flips it, so ``state_out``/``state_in`` swap without a copy and
without re-binding. Sessions use one thread, sequential execution and all graph
optimisations.

Two backends run the same ONNX file in onnxruntime:

* ``capi`` (default): the session and bindings are created through
  onnxruntime's C API (``libonnxruntime.so`` ships in the wheel) and
  ``OrtApi::RunWithBinding`` is called from a numba kernel through its function
  pointer: no pybind11 layer, no GIL release/re-acquire. From Python the
  cheapest call is ``runner.fast_step()(slot)`` (:func:`step_by_address`: one
  njit call with two ints); the daemon's own njit tick kernel can call
  :func:`model_step` inline and pay no crossing at all;
* ``pybind``: ``InferenceSession._sess.run_with_iobinding(iobinding, None)``.
  Not the public ``run_with_iobinding`` wrapper (extra Python frames), never with
  a ``RunOptions`` (~28 µs in onnxruntime 1.31: an internal C++ exception), and
  not ``run_with_ort_values`` (~30 µs, same cause). See ``perf/bench_model.py``.

After every run the step kernel derives alpha if needed and checks the outputs
and the new state: any NaN/inf makes it return False, zero the slot's state and
alpha and count the event (``nonfinite``); the caller stops quoting that
instrument. Nothing raises in the hot path.

Batch
-----
:meth:`Model.predict_batch` evaluates the same model over a whole feature matrix
(rows of several instruments, each with its own state). For ``ssm`` models it
reads the weights from the ONNX initializers and runs the state scan in a numba
kernel; stateless models run as one onnxruntime call with a batch dimension;
any other recurrent model loops over the step runner.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numba import carray, njit, types
from numba.extending import intrinsic

from core.feature_spec import feature_spec as running_feature_spec

CONTRACT_VERSION = 1
CLASSES = ("down", "flat", "up")
N_CLASSES = 3

INPUT_FEATURES = "features"
INPUT_STATE = "state_in"
OUTPUT_ALPHA = "alpha"
OUTPUT_LOGITS = "logits"
OUTPUT_STATE = "state_out"

META_CONTRACT = "contract_version"
META_FEATURE_SPEC = "feature_spec"
META_KIND = "model_kind"
META_HORIZONS = "horizons"
META_CLASSES = "classes"
META_OUTPUTS = "outputs"
META_STATE_SIZE = "state_size"
META_ALPHA_HORIZON = "alpha_horizon"
META_CLASS_MEAN = "class_mean_ticks"
META_FLAT_TICKS = "flat_ticks"
META_TRAINING = "training"

REQUIRED_META = (META_CONTRACT, META_FEATURE_SPEC, META_KIND, META_HORIZONS, META_CLASSES,
                 META_OUTPUTS, META_STATE_SIZE)

DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "models" / "default.onnx"


class ModelContractError(ValueError):
    """The file is not a model this daemon can run; ``problems`` lists every difference."""

    def __init__(self, path: str, problems: Sequence[str]) -> None:
        self.path = path
        self.problems = list(problems)
        super().__init__(f"{path}: model contract violated:\n  - " + "\n  - ".join(self.problems))


@dataclass(frozen=True)
class ModelInfo:
    """The parsed, validated contract of a model file."""

    kind: str
    feature_names: tuple[str, ...]
    feature_version: int
    horizons: tuple[int, ...]
    outputs: tuple[str, ...]
    state_size: int
    alpha_horizon: int
    class_mean_ticks: np.ndarray  # float64 [H, 3]
    flat_ticks: float
    training: dict[str, Any]
    metadata: dict[str, str]

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def n_logits(self) -> int:
        return N_CLASSES * len(self.horizons)

    @property
    def recurrent(self) -> bool:
        return self.state_size > 0

    @property
    def has_alpha(self) -> bool:
        return OUTPUT_ALPHA in self.outputs

    @property
    def has_logits(self) -> bool:
        return OUTPUT_LOGITS in self.outputs


# --------------------------------------------------------------------------
# contract validation
# --------------------------------------------------------------------------


def _dims(vi: Any) -> list[int | str] | None:
    t = vi.type
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in t.tensor_type.shape.dim]


def _spec_differences(model_spec: Any, spec: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    if not isinstance(model_spec, dict) or "names" not in model_spec or "version" not in model_spec:
        return [f"metadata '{META_FEATURE_SPEC}' must be a JSON object with 'version' and 'names'"]
    names = list(model_spec["names"])
    want = list(spec["names"])
    if model_spec["version"] != spec["version"]:
        problems.append(f"feature spec version: model was trained on version "
                        f"{model_spec['version']}, the running feature spec is version "
                        f"{spec['version']}")
    if names != want:
        missing = [n for n in want if n not in names]
        extra = [n for n in names if n not in want]
        if missing or extra:
            if missing:
                problems.append(f"feature names: missing from the model: {missing}")
            if extra:
                problems.append(f"feature names: unknown to the running spec: {extra}")
        else:
            i = next(k for k, (a, b) in enumerate(zip(names, want, strict=True)) if a != b)
            problems.append(f"feature order: position {i} is {names[i]!r} in the model but "
                            f"{want[i]!r} in the running spec (same names, different order)")
    return problems


def validate_model_proto(proto: Any, feature_spec: Mapping[str, Any] | None = None,
                         path: str = "<model>") -> ModelInfo:
    """Check an ``onnx.ModelProto`` against the contract; raise ModelContractError."""
    import onnx

    spec: dict[str, Any] = dict(feature_spec or running_feature_spec())
    problems: list[str] = []
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:  # onnx raises several types
        raise ModelContractError(path, [f"invalid ONNX model: {exc}".strip()]) from exc

    meta = {p.key: p.value for p in proto.metadata_props}
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        problems.append(f"missing metadata: {missing}")

    def js(key: str, default: Any = None) -> Any:
        if key not in meta:
            return default
        try:
            return json.loads(meta[key])
        except ValueError:
            problems.append(f"metadata '{key}' is not valid JSON: {meta[key][:80]!r}")
            return default

    contract = js(META_CONTRACT)
    if contract is not None and contract != CONTRACT_VERSION:
        problems.append(f"contract_version {contract!r}, this daemon speaks {CONTRACT_VERSION}")
    mspec = js(META_FEATURE_SPEC)
    if mspec is not None:
        problems += _spec_differences(mspec, spec)
    horizons = js(META_HORIZONS, [])
    if META_HORIZONS in meta and (not isinstance(horizons, list) or not horizons
                                  or not all(isinstance(h, int) and h > 0 for h in horizons)):
        problems.append(f"metadata 'horizons' must be a non-empty list of positive ints, "
                        f"got {meta[META_HORIZONS]!r}")
        horizons = []
    classes = js(META_CLASSES)
    if classes is not None and list(classes) != list(CLASSES):
        problems.append(f"metadata 'classes' is {classes}, expected {list(CLASSES)}")
    outputs_meta = js(META_OUTPUTS, [])
    state_size = js(META_STATE_SIZE, 0)
    if not isinstance(state_size, int) or state_size < 0:
        problems.append(f"metadata 'state_size' must be an int >= 0, "
                        f"got {meta.get(META_STATE_SIZE)!r}")
        state_size = 0

    # graph inputs / outputs (initializers are not inputs)
    inits = {t.name for t in proto.graph.initializer}
    g_in = {vi.name: vi for vi in proto.graph.input if vi.name not in inits}
    g_out = {vi.name: vi for vi in proto.graph.output}
    n_feat = len(spec["names"])
    H3 = N_CLASSES * len(horizons)

    def check_tensor(kind: str, name: str, vi: Any, shape: list[int]) -> None:
        et = vi.type.tensor_type.elem_type if vi.type.HasField("tensor_type") else -1
        if et != onnx.TensorProto.FLOAT:
            tname = onnx.TensorProto.DataType.Name(et) if et >= 0 else "not a tensor"
            problems.append(f"{kind} '{name}' has dtype {tname}, expected FLOAT (float32)")
        dims = _dims(vi)
        if dims != shape:
            problems.append(f"{kind} '{name}' has shape {dims}, expected {shape}")

    if INPUT_FEATURES not in g_in:
        problems.append(f"no input named '{INPUT_FEATURES}' (inputs: {sorted(g_in)})")
    else:
        check_tensor("input", INPUT_FEATURES, g_in[INPUT_FEATURES], [1, n_feat])
    unknown_in = sorted(set(g_in) - {INPUT_FEATURES, INPUT_STATE})
    if unknown_in:
        problems.append(f"unexpected inputs {unknown_in}: the contract has only "
                        f"'{INPUT_FEATURES}' and '{INPUT_STATE}'")
    has_sin, has_sout = INPUT_STATE in g_in, OUTPUT_STATE in g_out
    if has_sin != has_sout:
        problems.append(f"recurrent models need both '{INPUT_STATE}' and '{OUTPUT_STATE}' "
                        f"(has {INPUT_STATE}: {has_sin}, has {OUTPUT_STATE}: {has_sout})")
    if has_sin and has_sout:
        if state_size <= 0:
            problems.append(f"model has '{INPUT_STATE}' but metadata state_size is {state_size}")
        else:
            check_tensor("input", INPUT_STATE, g_in[INPUT_STATE], [1, state_size])
            check_tensor("output", OUTPUT_STATE, g_out[OUTPUT_STATE], [1, state_size])
    elif state_size > 0 and not (has_sin or has_sout):
        problems.append(f"metadata state_size is {state_size} but the model has no "
                        f"'{INPUT_STATE}'/'{OUTPUT_STATE}'")
    if OUTPUT_ALPHA not in g_out and OUTPUT_LOGITS not in g_out:
        problems.append(f"no '{OUTPUT_ALPHA}' or '{OUTPUT_LOGITS}' output "
                        f"(outputs: {sorted(g_out)})")
    if OUTPUT_ALPHA in g_out:
        check_tensor("output", OUTPUT_ALPHA, g_out[OUTPUT_ALPHA], [1, 1])
    if OUTPUT_LOGITS in g_out and horizons:
        check_tensor("output", OUTPUT_LOGITS, g_out[OUTPUT_LOGITS], [1, H3])
    unknown_out = sorted(set(g_out) - {OUTPUT_ALPHA, OUTPUT_LOGITS, OUTPUT_STATE})
    if unknown_out:
        problems.append(f"unexpected outputs {unknown_out}")
    if META_OUTPUTS in meta and sorted(outputs_meta or []) != sorted(g_out):
        problems.append(f"metadata 'outputs' {outputs_meta} does not match the graph outputs "
                        f"{sorted(g_out)}")

    alpha_h = js(META_ALPHA_HORIZON, 0)
    class_mean = js(META_CLASS_MEAN)
    cm = np.zeros((len(horizons), N_CLASSES))
    if OUTPUT_ALPHA not in g_out:
        for k in (META_ALPHA_HORIZON, META_CLASS_MEAN):
            if k not in meta:
                problems.append(f"missing metadata '{k}': needed to derive alpha from logits "
                                f"(the model has no '{OUTPUT_ALPHA}' output)")
    if not isinstance(alpha_h, int) or not 0 <= alpha_h < max(1, len(horizons)):
        problems.append(f"metadata 'alpha_horizon' {alpha_h!r} is not a horizon index")
        alpha_h = 0
    if class_mean is not None:
        arr = np.asarray(class_mean, dtype=np.float64)
        if arr.shape != (len(horizons), N_CLASSES) or not np.all(np.isfinite(arr)):
            problems.append(f"metadata 'class_mean_ticks' must be finite [{len(horizons)}][3], "
                            f"got shape {arr.shape}")
        else:
            cm = arr
    flat = js(META_FLAT_TICKS, 0.0)
    training = js(META_TRAINING, {})
    if problems:
        raise ModelContractError(path, problems)
    kind = meta[META_KIND]
    return ModelInfo(
        kind=kind, feature_names=tuple(spec["names"]), feature_version=int(spec["version"]),
        horizons=tuple(int(h) for h in horizons), outputs=tuple(sorted(g_out)),
        state_size=int(state_size) if has_sin else 0, alpha_horizon=int(alpha_h),
        class_mean_ticks=cm, flat_ticks=float(flat or 0.0),
        training=training if isinstance(training, dict) else {}, metadata=meta,
    )


def session_options() -> Any:
    """The hot-path session options: one thread, sequential, all graph optimisations."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return so


@dataclass
class BatchResult:
    logits: np.ndarray  # float32 [n, 3H] (zeros if the model has no logits)
    alpha: np.ndarray  # float32 [n]
    ok: np.ndarray  # bool [n]: outputs and state finite
    final_state: dict[int, np.ndarray] = field(default_factory=dict)  # group -> state [S]


class Model:
    """A validated model file: its contract, bytes and a reference onnxruntime session."""

    def __init__(self, path: str, data: bytes, proto: Any, info: ModelInfo) -> None:
        import onnxruntime as ort

        self.path = path
        self.data = data
        self.proto = proto
        self.info = info
        try:
            self.session = ort.InferenceSession(data, session_options(),
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelContractError(path, [f"onnxruntime cannot load the model: {exc}"]) from exc

    def __repr__(self) -> str:
        i = self.info
        return (f"Model({self.path!r}, kind={i.kind}, F={i.n_features}, S={i.state_size}, "
                f"horizons={list(i.horizons)}, outputs={list(i.outputs)})")

    def runner(self, n_slots: int = 1, backend: str = "auto",
               features: np.ndarray | None = None) -> ModelRunner:
        return ModelRunner(self, n_slots=n_slots, backend=backend, features=features)

    def initializer(self, name: str) -> np.ndarray | None:
        from onnx import numpy_helper

        for t in self.proto.graph.initializer:
            if t.name == name:
                return numpy_helper.to_array(t)
        return None

    def run_reference(self, features: np.ndarray,
                      state: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """One plain ``InferenceSession.run`` (allocating: tests and tools, not the hot path)."""
        feeds = {INPUT_FEATURES: np.asarray(features, np.float32).reshape(1, -1)}
        if self.info.recurrent:
            s = np.zeros((1, self.info.state_size), np.float32) if state is None else state
            feeds[INPUT_STATE] = np.asarray(s, np.float32).reshape(1, -1)
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(names, feeds), strict=True))

    def predict_batch(self, features: np.ndarray, group: np.ndarray | None = None,
                      method: str = "auto") -> BatchResult:
        """Evaluate the model over ``features`` [n, F] in row order.

        ``group`` (e.g. security_id per row) gives each group its own recurrent state,
        as the live daemon keeps one slot per instrument. ``method``: "auto", "scan"
        (ssm weights + numba scan), "onnx" (one batched onnxruntime call, stateless
        models only) or "step" (the hot-path runner row by row).
        """
        X = np.ascontiguousarray(features, dtype=np.float32)
        i = self.info
        if X.ndim != 2 or X.shape[1] != i.n_features:
            raise ValueError(f"features must be [n, {i.n_features}], got {X.shape}")
        gid, groups = _group_index(X.shape[0], group)
        if method == "auto":
            if i.kind == "ssm" and self._ssm_weights() is not None:
                method = "scan"
            elif not i.recurrent:
                method = "onnx"
            else:
                method = "step"
        if method == "scan":
            return self._batch_scan(X, gid, groups)
        if method == "onnx":
            if i.recurrent:
                raise ValueError("method='onnx' needs a stateless model")
            return self._batch_onnx(X)
        if method == "step":
            return self._batch_step(X, gid, groups)
        raise ValueError(f"unknown method {method!r}")

    # -- batch implementations
    def _ssm_weights(self) -> tuple[np.ndarray, ...] | None:
        """(decay [S], offset [S], input [F, S], readout [S, 3H], bias [3H]) of an exported SSM."""
        wiring = [(n.op_type, list(n.input), list(n.output), len(n.attribute))
                  for n in self.proto.graph.node]
        if wiring != [("Gemm", [INPUT_STATE, "ssm_decay", "ssm_offset"], ["carry"], 0),
                      ("Gemm", [INPUT_FEATURES, "ssm_input", "carry"], [OUTPUT_STATE], 0),
                      ("Gemm", [OUTPUT_STATE, "readout_w", "readout_b"], [OUTPUT_LOGITS], 0)]:
            return None  # not the graph core.train exports: use the generic paths
        w = [self.initializer(n) for n in ("ssm_decay", "ssm_offset", "ssm_input", "readout_w",
                                           "readout_b")]
        if any(a is None for a in w):
            return None
        A, c, B, W, b = (np.asarray(a, np.float32) for a in w if a is not None)
        if A.ndim != 2 or np.any(A - np.diag(np.diag(A))):
            return None  # only the diagonal form has a cheap scan
        return np.ascontiguousarray(np.diag(A)), c, B, W, b

    def _batch_scan(self, X: np.ndarray, gid: np.ndarray, groups: np.ndarray) -> BatchResult:
        w = self._ssm_weights()
        if w is None:
            raise ValueError("method='scan' needs an ssm model exported by core.train")
        a, c, B, W, b = w
        n = X.shape[0]
        last = np.zeros((len(groups), a.shape[0]), np.float32)
        logits = np.empty((n, W.shape[1]), np.float32)
        alpha = np.empty(n, np.float32)
        ok = np.empty(n, np.bool_)
        i = self.info
        _ssm_batch(X, gid, a, c, np.ascontiguousarray(B), np.ascontiguousarray(W), b,
                   i.class_mean_ticks.astype(np.float64).ravel(), i.alpha_horizon, last,
                   logits, alpha, ok)
        return BatchResult(logits=logits, alpha=alpha, ok=ok,
                           final_state={int(g): last[k].copy() for k, g in enumerate(groups)})

    def _batch_onnx(self, X: np.ndarray) -> BatchResult:
        import onnxruntime as ort

        sess = ort.InferenceSession(_with_batch_dim(self.proto).SerializeToString(),
                                    session_options(), providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        res = dict(zip(names, sess.run(names, {INPUT_FEATURES: X}), strict=True))
        i = self.info
        n = X.shape[0]
        logits = res.get(OUTPUT_LOGITS, np.zeros((n, i.n_logits), np.float32))
        alpha = np.empty(n, np.float32)
        ok = np.empty(n, np.bool_)
        _alpha_rows(logits, np.zeros((n, 0), np.float32), i.alpha_horizon,
                    i.class_mean_ticks.astype(np.float64).ravel(), alpha, ok)
        if OUTPUT_ALPHA in res:
            alpha = res[OUTPUT_ALPHA].reshape(-1).astype(np.float32)
            ok &= np.isfinite(alpha)
        return BatchResult(logits=np.asarray(logits, np.float32), alpha=alpha, ok=ok)

    def _batch_step(self, X: np.ndarray, gid: np.ndarray, groups: np.ndarray) -> BatchResult:
        r = self.runner(n_slots=len(groups))
        try:
            n = X.shape[0]
            logits = np.zeros((n, self.info.n_logits), np.float32)
            alpha = np.zeros(n, np.float32)
            ok = np.zeros(n, np.bool_)
            for k in range(n):
                s = int(gid[k])
                r.features[s] = X[k]
                ok[k] = r.step(s)
                logits[k] = r.logits[s]
                alpha[k] = r.alpha[s]
            final = {int(g): r.next_state(k).copy() for k, g in enumerate(groups)}
        finally:
            r.close()
        return BatchResult(logits=logits, alpha=alpha, ok=ok, final_state=final)


def _group_index(n: int, group: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    if group is None:
        return np.zeros(n, np.int64), np.zeros(1, np.int64)
    g = np.asarray(group)
    if g.shape != (n,):
        raise ValueError(f"group must have one entry per row ({n}), got {g.shape}")
    groups, gid = np.unique(g, return_inverse=True)
    return gid.astype(np.int64), groups


def _with_batch_dim(proto: Any) -> Any:
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(proto)
    for vi in list(m.graph.input) + list(m.graph.output):
        d = vi.type.tensor_type.shape.dim[0]
        d.Clear()
        d.dim_param = "N"
    return m


def load_model(path: str | os.PathLike[str] | None = None,
               feature_spec: Mapping[str, Any] | None = None) -> Model:
    """Load and validate a model file (default: the shipped ``core/models/default.onnx``).

    ``feature_spec`` defaults to the running ``core.feature_spec.feature_spec()``.
    Raises ModelContractError naming every difference from the contract.
    """
    import onnx
    from google.protobuf.message import DecodeError

    p = str(DEFAULT_MODEL_PATH if path is None else path)
    try:
        data = Path(p).read_bytes()
    except OSError as exc:
        raise ModelContractError(p, [f"cannot read the file: {exc.strerror or exc}"]) from exc
    try:
        proto = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise ModelContractError(p, [f"not an ONNX file (protobuf decode failed: {exc})"]) from exc
    if not data or proto.ir_version <= 0 or not proto.HasField("graph") or not proto.opset_import:
        raise ModelContractError(p, ["not an ONNX file (no IR version, graph or opset import)"])
    info = validate_model_proto(proto, feature_spec, path=p)
    return Model(p, data, proto, info)


# --------------------------------------------------------------------------
# kernels shared by the hot path and batch
# --------------------------------------------------------------------------

# control block of a runner (int64): header, then 2 bindings and 1 parity per slot
C_RUN_FN = 0  # OrtApi::RunWithBinding (capi backend), else 0
C_SESSION = 1
C_RELEASE_STATUS = 2
C_N_SLOTS = 3
C_STATE_SIZE = 4
C_N_LOGITS = 5
C_DERIVE_ALPHA = 6  # 1: alpha from logits; 0: the model outputs alpha
C_ALPHA_H = 7
C_NONFINITE = 8  # count of steps with NaN/inf outputs
C_RUN_ERRORS = 9  # count of onnxruntime errors (status != NULL)
C_LAST_STATUS = 10  # first unread OrtStatus*, for the control plane to report
C_MU = 11  # 3 float64 (as bits): class means at the alpha horizon
C_STATE_PTR = 14  # address of the runner's state array (for step_by_address)
C_OUT_PTR = 15  # address of the runner's out array
C_HEADER = 16


def _call_ptr3_impl(typingctx: Any, fn: Any, a: Any, b: Any, c: Any) -> Any:
    """Call the C function at address ``fn`` with three pointer args; returns the pointer."""
    sig = types.int64(types.int64, types.int64, types.int64, types.int64)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        from llvmlite import ir

        i8p = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(i8p, [i8p, i8p, i8p])
        f = builder.inttoptr(args[0], fnty.as_pointer())
        r = builder.call(f, [builder.inttoptr(v, i8p) for v in args[1:]])
        return builder.ptrtoint(r, ir.IntType(64))

    return sig, codegen


_call_ptr3: Any = intrinsic(_call_ptr3_impl)


def _call_ptr1_void_impl(typingctx: Any, fn: Any, a: Any) -> Any:
    sig = types.int64(types.int64, types.int64)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        from llvmlite import ir

        i8p = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [i8p])
        f = builder.inttoptr(args[0], fnty.as_pointer())
        builder.call(f, [builder.inttoptr(args[1], i8p)])
        return ir.Constant(ir.IntType(64), 0)

    return sig, codegen


_call_ptr1_void: Any = intrinsic(_call_ptr1_void_impl)


def _ptr_impl(dtype: Any) -> Any:
    def impl(typingctx: Any, addr: Any) -> Any:
        sig = types.CPointer(dtype)(types.int64)

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            return builder.inttoptr(args[0], context.get_value_type(types.CPointer(dtype)))

        return sig, codegen

    return impl


_i64_ptr: Any = intrinsic(_ptr_impl(types.int64))
_f32_ptr: Any = intrinsic(_ptr_impl(types.float32))


@njit(cache=True)
def _expected_move(l0, l1, l2, mu0, mu1, mu2):
    # softmax of 3 logits dotted with the class means, shifted for stability
    m = max(l0, max(l1, l2))
    e0 = math.exp(l0 - m)
    e1 = math.exp(l1 - m)
    e2 = math.exp(l2 - m)
    return (e0 * mu0 + e1 * mu1 + e2 * mu2) / (e0 + e1 + e2)


@njit(cache=True)
def _finish_step(ctl, state, out, slot):
    """After a run: flip parity, derive alpha, check finiteness; on NaN/inf reset the slot."""
    S = ctl[C_STATE_SIZE]
    H3 = ctl[C_N_LOGITS]
    par = C_HEADER + 2 * ctl[C_N_SLOTS] + slot
    p = ctl[par]
    ctl[par] = 1 - p
    row = out[slot]
    ok = True
    for j in range(H3):
        if not math.isfinite(row[j]):
            ok = False
    if ctl[C_DERIVE_ALPHA] != 0 and ok:
        mu = ctl[C_MU:C_MU + 3].view(np.float64)
        h = 3 * ctl[C_ALPHA_H]
        row[H3] = _expected_move(row[h], row[h + 1], row[h + 2], mu[0], mu[1], mu[2])
    if not math.isfinite(row[H3]):
        ok = False
    if S > 0:
        new = state[slot, 1 - p]
        for j in range(S):
            if not math.isfinite(new[j]):
                ok = False
                break
    if not ok:
        ctl[C_NONFINITE] += 1
        state[slot, :, :] = 0.0
        row[H3] = 0.0
    return ok


@njit(cache=True)
def model_step(ctl, state, out, slot):
    """One inference for ``slot`` through the C API (capi backend); True if outputs are finite.

    Callable from any njit kernel: ``ctl``, ``state`` and ``out`` are the runner's
    arrays; the runner's ``features[slot]`` must hold the current feature row.
    """
    if ctl[C_RUN_FN] == 0 or slot < 0 or slot >= ctl[C_N_SLOTS]:
        return False  # closed runner or bad slot: never call through a dead pointer
    p = ctl[C_HEADER + 2 * ctl[C_N_SLOTS] + slot]
    status = _call_ptr3(ctl[C_RUN_FN], ctl[C_SESSION], 0, ctl[C_HEADER + 2 * slot + p])
    if status != 0:
        ctl[C_RUN_ERRORS] += 1
        if ctl[C_LAST_STATUS] == 0:
            ctl[C_LAST_STATUS] = status  # kept for the control plane to read, then released
        else:
            _call_ptr1_void(ctl[C_RELEASE_STATUS], status)
        out[slot, ctl[C_N_LOGITS]] = 0.0
        return False
    return _finish_step(ctl, state, out, slot)


@njit(cache=True)
def step_by_address(ctl_addr, slot):
    """``model_step`` for the runner whose ``ctl`` array starts at ``ctl_addr``.

    Two integer arguments instead of three arrays: the cheapest entry from Python
    (numba unboxes each array argument on every call). The arrays are rebuilt
    from the addresses the runner stored in its control block.
    """
    head = carray(_i64_ptr(ctl_addr), (C_HEADER,))
    n = head[C_N_SLOTS]
    ctl = carray(_i64_ptr(ctl_addr), (C_HEADER + 3 * n,))
    S = max(head[C_STATE_SIZE], 1)
    state = carray(_f32_ptr(head[C_STATE_PTR]), (n, 2, S))
    out = carray(_f32_ptr(head[C_OUT_PTR]), (n, head[C_N_LOGITS] + 1))
    return model_step(ctl, state, out, slot)


@njit(cache=True)
def _ssm_scan(U, a, gid, states, last):
    # s_t = a * s_{t-1} + u_t per group; last[g] carries each group's state
    n, S = U.shape
    for t in range(n):
        g = gid[t]
        for j in range(S):
            v = a[j] * last[g, j] + U[t, j]
            last[g, j] = v
            states[t, j] = v


@njit(cache=True)
def _ssm_rows(X, gid, a, c, B, W, b, mu, h, last, logits, full, alpha, ok, t0, t1):
    """The SSM row by row, every logit computed (the exact reference order of ``_ssm_batch``)."""
    F = X.shape[1]
    S = a.shape[0]
    K = W.shape[1]
    s = np.empty(S, np.float32)
    row = np.empty(K, np.float32)
    for t in range(t0, t1):
        prev = last[gid[t]]
        for j in range(S):
            s[j] = a[j] * prev[j] + c[j]
        for f in range(F):
            xf = X[t, f]
            Bf = B[f]
            for j in range(S):
                s[j] += xf * Bf[j]
        for k in range(K):
            row[k] = b[k]
        good = True
        for j in range(S):
            sj = s[j]
            prev[j] = sj
            if not math.isfinite(sj):
                good = False
            Wj = W[j]
            for k in range(K):
                row[k] += sj * Wj[k]
        for k in range(K):
            if not math.isfinite(row[k]):
                good = False
            if full:
                logits[t, k] = row[k]
        if good and K > 0:
            alpha[t] = _expected_move(row[h], row[h + 1], row[h + 2], mu[h], mu[h + 1], mu[h + 2])
        else:
            alpha[t] = 0.0
        if not good:
            prev[:] = 0.0  # as the hot path does: a poisoned state restarts from zero
        ok[t] = good


_SSM_BLOCK = 64  # rows per block of the batch readout
_SIMD = 8  # float32 lanes of AVX2: the recurrence runs on state vectors padded to this
_FINITE_BOUND = np.float32(1e38)  # a logit bounded by this is finite (float32 max 3.4e38)


@njit(cache=True)
def _ssm_batch(X, gid, a, c, B, W, b, mu, alpha_h, last, logits, alpha, ok):
    """The exported SSM over every row (float32, as onnxruntime computes it):
    carry = a * s + c; s = x @ B + carry; logits = s @ W + b; alpha; finiteness.

    ``logits`` [n, K] receives every logit, or has 0 columns: then only alpha's
    three are computed, and the others are proved finite by a bound instead.
    Per block of rows: the recurrence row by row, then the readout over the
    block's rows at once (independent sums: they vectorise and do not wait on
    each other). Every sum runs in the order of ``_ssm_rows``, so the results
    are bit for bit the same; a block with a non-finite row (its state restarts
    from zero, which changes the rows after it) is redone by ``_ssm_rows``."""
    n, F = X.shape
    S = a.shape[0]
    K = W.shape[1]
    h = 3 * alpha_h
    full = logits.shape[1] > 0
    if K == 0 or n == 0:
        _ssm_rows(X, gid, a, c, B, W, b, mu, h, last, logits, full, alpha, ok, 0, n)
        return
    k0 = 0 if full else h
    nk = K if full else 3
    # |logit k| <= |b_k| + sum_j |s_j| |W_jk| (within float32 rounding): wmax_j = max_k |W_jk|
    wmax = np.zeros(S, np.float32)
    for j in range(S):
        for k in range(K):
            wmax[j] = max(wmax[j], abs(W[j, k]))
    bmax = np.float32(0.0)
    for k in range(K):
        bmax = max(bmax, abs(b[k]))
    R = _SSM_BLOCK
    st = np.empty((S, R), np.float32)  # the block's states, transposed: [j, row]
    acc = np.empty((nk, R), np.float32)
    bound = np.empty(R, np.float32)
    # the recurrence on state vectors padded to whole SIMD blocks (padding lanes never read)
    Sp = (S + _SIMD - 1) // _SIMD * _SIMD
    ap = np.zeros(Sp, np.float32)
    cp = np.zeros(Sp, np.float32)
    Bp = np.zeros((F, Sp), np.float32)
    ap[:S] = a
    cp[:S] = c
    Bp[:, :S] = B
    lp = np.zeros((last.shape[0], Sp), np.float32)
    lp[:, :S] = last
    saved = np.empty_like(lp)
    s = np.empty(Sp, np.float32)
    for t0 in range(0, n, R):
        t1 = min(t0 + R, n)
        m = t1 - t0
        saved[:] = lp
        for u in range(m):
            prev = lp[gid[t0 + u]]
            for j in range(Sp):
                s[j] = ap[j] * prev[j] + cp[j]
            for f in range(F):
                xf = X[t0 + u, f]
                Bf = Bp[f]
                for j in range(Sp):
                    s[j] += xf * Bf[j]
            for j in range(Sp):
                prev[j] = s[j]
            for j in range(S):
                st[j, u] = s[j]
        for q in range(nk):
            bk = b[k0 + q]
            for u in range(m):
                acc[q, u] = bk
            for j in range(S):
                w = W[j, k0 + q]
                for u in range(m):
                    acc[q, u] += st[j, u] * w
        if not full and nk < K:
            for u in range(m):
                bound[u] = bmax
            for j in range(S):
                wj = wmax[j]
                for u in range(m):
                    bound[u] += abs(st[j, u]) * wj
        else:
            bound[:m] = 0.0
        good = True
        for u in range(m):
            # a non-finite state makes every logit non-finite: the computed ones tell
            for q in range(nk):
                if not math.isfinite(acc[q, u]):
                    good = False
            if not bound[u] < _FINITE_BOUND:
                good = False
        if not good:
            last[:] = saved[:, :S]
            _ssm_rows(X, gid, a, c, B, W, b, mu, h, last, logits, full, alpha, ok, t0, t1)
            lp[:, :S] = last
            continue
        for u in range(m):
            t = t0 + u
            if full:
                for q in range(nk):
                    logits[t, q] = acc[q, u]
            alpha[t] = _expected_move(acc[h - k0, u], acc[h - k0 + 1, u], acc[h - k0 + 2, u],
                                      mu[h], mu[h + 1], mu[h + 2])
            ok[t] = True
    last[:] = lp[:, :S]


@njit(cache=True)
def _alpha_rows(logits, states, alpha_h, mu, alpha, ok):
    n = logits.shape[0]
    h = 3 * alpha_h
    for t in range(n):
        good = True
        for j in range(logits.shape[1]):
            if not math.isfinite(logits[t, j]):
                good = False
        for j in range(states.shape[1]):
            if not math.isfinite(states[t, j]):
                good = False
        if good and logits.shape[1] > 0:
            alpha[t] = _expected_move(logits[t, h], logits[t, h + 1], logits[t, h + 2],
                                      mu[h], mu[h + 1], mu[h + 2])
        else:
            alpha[t] = 0.0
        ok[t] = good


# --------------------------------------------------------------------------
# onnxruntime C API (ctypes), for the capi backend
# --------------------------------------------------------------------------

# Indices into the OrtApi function table (onnxruntime_c_api.h). The table is
# append-only across releases, so these never move.
_API_VERSION = 16
_IDX = {
    "GetErrorMessage": 2, "CreateEnv": 3, "CreateSessionFromArray": 8,
    "CreateSessionOptions": 10, "SetSessionExecutionMode": 13,
    "SetSessionGraphOptimizationLevel": 23, "SetIntraOpNumThreads": 24,
    "SetInterOpNumThreads": 25, "CreateTensorWithDataAsOrtValue": 49,
    "CreateCpuMemoryInfo": 69, "ReleaseEnv": 92, "ReleaseStatus": 93, "ReleaseMemoryInfo": 94,
    "ReleaseSession": 95, "ReleaseValue": 96, "ReleaseSessionOptions": 100,
    "AddSessionConfigEntry": 130, "RunWithBinding": 133, "CreateIoBinding": 134,
    "ReleaseIoBinding": 135, "BindInput": 136, "BindOutput": 137,
}
_ORT_SEQUENTIAL = 0
_ORT_ENABLE_ALL = 99
_ORT_ARENA_ALLOCATOR = 1
_ORT_MEM_TYPE_DEFAULT = 0
_ONNX_FLOAT = 1
_LOG_ERROR = 3


class _OrtCApi:
    """The few C API calls the capi backend needs, bound once per process."""

    _instance: _OrtCApi | None = None
    _failure: str | None = None

    def __init__(self) -> None:
        import onnxruntime as ort

        capi = Path(ort.__file__).resolve().parent / "capi"
        cands = sorted(glob.glob(str(capi / f"libonnxruntime.so.{ort.__version__}")))
        cands += sorted(glob.glob(str(capi / "libonnxruntime.so*")))
        if not cands:
            raise OSError(f"no libonnxruntime.so in {capi}")
        self.lib = ctypes.CDLL(cands[0])

        class _Base(ctypes.Structure):
            _fields_ = [("GetApi", ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_uint32)),
                        ("GetVersionString", ctypes.CFUNCTYPE(ctypes.c_char_p))]

        self.lib.OrtGetApiBase.restype = ctypes.POINTER(_Base)
        base = self.lib.OrtGetApiBase().contents
        version = (base.GetVersionString() or b"").decode()
        if version != ort.__version__:
            raise OSError(f"{cands[0]} is onnxruntime {version}, "
                          f"the python package is {ort.__version__}")
        api = base.GetApi(_API_VERSION)
        if not api:
            raise OSError(f"onnxruntime {version} does not offer C API version {_API_VERSION}")
        self.table = ctypes.cast(api, ctypes.POINTER(ctypes.c_void_p))
        vp, P = ctypes.c_void_p, ctypes.POINTER

        def fn(name: str, *args: Any, restype: Any = vp) -> Any:
            return ctypes.CFUNCTYPE(restype, *args)(self.table[_IDX[name]])

        self.GetErrorMessage = fn("GetErrorMessage", vp, restype=ctypes.c_char_p)
        self.ReleaseStatus = fn("ReleaseStatus", vp, restype=None)
        self.CreateEnv = fn("CreateEnv", ctypes.c_int, ctypes.c_char_p, P(vp))
        self.CreateSessionOptions = fn("CreateSessionOptions", P(vp))
        self.SetSessionExecutionMode = fn("SetSessionExecutionMode", vp, ctypes.c_int)
        self.SetGraphOpt = fn("SetSessionGraphOptimizationLevel", vp, ctypes.c_int)
        self.SetIntra = fn("SetIntraOpNumThreads", vp, ctypes.c_int)
        self.SetInter = fn("SetInterOpNumThreads", vp, ctypes.c_int)
        self.AddConfig = fn("AddSessionConfigEntry", vp, ctypes.c_char_p, ctypes.c_char_p)
        self.CreateSessionFromArray = fn("CreateSessionFromArray", vp, ctypes.c_char_p,
                                         ctypes.c_size_t, vp, P(vp))
        self.CreateCpuMemoryInfo = fn("CreateCpuMemoryInfo", ctypes.c_int, ctypes.c_int, P(vp))
        self.CreateTensor = fn("CreateTensorWithDataAsOrtValue", vp, vp, ctypes.c_size_t,
                               P(ctypes.c_int64), ctypes.c_size_t, ctypes.c_int, P(vp))
        self.CreateIoBinding = fn("CreateIoBinding", vp, P(vp))
        self.BindInput = fn("BindInput", vp, ctypes.c_char_p, vp)
        self.BindOutput = fn("BindOutput", vp, ctypes.c_char_p, vp)
        self.ReleaseValue = fn("ReleaseValue", vp, restype=None)
        self.ReleaseIoBinding = fn("ReleaseIoBinding", vp, restype=None)
        self.ReleaseSession = fn("ReleaseSession", vp, restype=None)
        self.ReleaseSessionOptions = fn("ReleaseSessionOptions", vp, restype=None)
        self.ReleaseMemoryInfo = fn("ReleaseMemoryInfo", vp, restype=None)
        self.run_with_binding_addr = int(self.table[_IDX["RunWithBinding"]])
        self.release_status_addr = int(self.table[_IDX["ReleaseStatus"]])
        self.env = vp()
        self.check(self.CreateEnv(_LOG_ERROR, b"nanoarb", ctypes.byref(self.env)))
        self.meminfo = vp()
        self.check(self.CreateCpuMemoryInfo(_ORT_ARENA_ALLOCATOR, _ORT_MEM_TYPE_DEFAULT,
                                            ctypes.byref(self.meminfo)))
        # the env and memory info live as long as the process

    @classmethod
    def get(cls) -> _OrtCApi | None:
        """The process-wide binding, or None if the C API is unavailable (see ``failure``)."""
        if cls._instance is None and cls._failure is None:
            try:
                cls._instance = cls()
            except (OSError, AttributeError, RuntimeError) as exc:
                cls._failure = str(exc)
        return cls._instance

    def message(self, status: int) -> str:
        msg = self.GetErrorMessage(ctypes.c_void_p(status))
        return (msg or b"?").decode(errors="replace")

    def check(self, status: int | None) -> None:
        if status:
            msg = self.message(status)
            self.ReleaseStatus(ctypes.c_void_p(status))
            raise RuntimeError(f"onnxruntime C API: {msg}")

    def create_session(self, data: bytes) -> int:
        so = ctypes.c_void_p()
        self.check(self.CreateSessionOptions(ctypes.byref(so)))
        try:
            self.check(self.SetSessionExecutionMode(so, _ORT_SEQUENTIAL))
            self.check(self.SetGraphOpt(so, _ORT_ENABLE_ALL))
            self.check(self.SetIntra(so, 1))
            self.check(self.SetInter(so, 1))
            self.check(self.AddConfig(so, b"session.intra_op.allow_spinning", b"0"))
            sess = ctypes.c_void_p()
            self.check(self.CreateSessionFromArray(self.env, data, len(data), so,
                                                   ctypes.byref(sess)))
        finally:
            self.ReleaseSessionOptions(so)
        return int(sess.value or 0)

    def tensor(self, arr: np.ndarray, shape: tuple[int, ...]) -> int:
        """An OrtValue over ``arr``'s memory (no copy); ``arr`` must outlive it."""
        if arr.dtype != np.float32 or int(np.prod(shape)) * 4 > arr.nbytes:
            raise ValueError("bad buffer for an OrtValue")
        dims = (ctypes.c_int64 * len(shape))(*shape)
        v = ctypes.c_void_p()
        self.check(self.CreateTensor(self.meminfo, ctypes.c_void_p(arr.ctypes.data),
                                     int(np.prod(shape)) * 4, dims, len(shape), _ONNX_FLOAT,
                                     ctypes.byref(v)))
        return int(v.value or 0)

    def binding(self, session: int, inputs: dict[str, int], outputs: dict[str, int]) -> int:
        b = ctypes.c_void_p()
        self.check(self.CreateIoBinding(ctypes.c_void_p(session), ctypes.byref(b)))
        for k, v in inputs.items():
            self.check(self.BindInput(b, k.encode(), ctypes.c_void_p(v)))
        for k, v in outputs.items():
            self.check(self.BindOutput(b, k.encode(), ctypes.c_void_p(v)))
        return int(b.value or 0)


def capi_unavailable_reason() -> str | None:
    """None if the capi backend can be used here, else why not."""
    _OrtCApi.get()
    return _OrtCApi._failure


# --------------------------------------------------------------------------
# hot path
# --------------------------------------------------------------------------

RUNNER_STARTING, RUNNER_READY, RUNNER_CLOSED = "STARTING", "READY", "CLOSED"


class ModelRunner:
    """Preallocated, bound buffers and one onnxruntime session for hot-path inference.

    ``features[slot]`` is the input row of instrument ``slot``: the feature
    kernel writes it in place, then ``step(slot)`` runs the model; ``alpha[slot]``
    and ``logits[slot]`` hold the result. ``step`` returns False (and zeroes the
    slot's state and alpha) when an output is NaN/inf: stop quoting that
    instrument. With the capi backend an njit kernel can instead call
    ``model_step(runner.ctl, runner.state, runner.out, slot)`` itself.
    """

    def __init__(self, model: Model, n_slots: int = 1, backend: str = "auto",
                 features: np.ndarray | None = None) -> None:
        """``features``: an existing float32 C-contiguous [n_slots, F] buffer to bind
        (e.g. inside the daemon's arena); by default the runner allocates one."""
        if n_slots < 1:
            raise ValueError("n_slots must be >= 1")
        if backend not in ("auto", "capi", "pybind"):
            raise ValueError(f"backend must be auto, capi or pybind, not {backend!r}")
        self.status = RUNNER_STARTING
        i = model.info
        self.model = model
        self.n_slots = n_slots
        F, S, H3 = i.n_features, i.state_size, i.n_logits
        if features is None:
            features = np.zeros((n_slots, F), np.float32)
        elif (features.dtype != np.float32 or features.shape != (n_slots, F)
              or not features.flags.c_contiguous or not features.flags.writeable):
            raise ValueError(f"features must be a writeable C-contiguous float32 [{n_slots}, {F}] "
                             f"array, got {features.dtype} {features.shape}")
        self.features = features
        self.state = np.zeros((n_slots, 2, max(S, 1)), np.float32)
        self.out = np.zeros((n_slots, H3 + 1), np.float32)
        self.logits = self.out[:, :H3]
        self.alpha = self.out[:, H3]
        self.ctl = np.zeros(C_HEADER + 3 * n_slots, np.int64)
        c = self.ctl
        c[C_N_SLOTS], c[C_STATE_SIZE], c[C_N_LOGITS] = n_slots, S, H3
        c[C_DERIVE_ALPHA] = 0 if i.has_alpha else 1
        c[C_ALPHA_H] = i.alpha_horizon
        c[C_STATE_PTR] = self.state.ctypes.data
        c[C_OUT_PTR] = self.out.ctypes.data
        if i.n_logits:
            c[C_MU:C_MU + 3].view(np.float64)[:] = i.class_mean_ticks[i.alpha_horizon]
        self._api: _OrtCApi | None = None
        self._values: list[int] = []
        self._bindings: list[int] = []
        self._session = 0
        self._iobs: list[Any] = []
        self._keep: list[Any] = []
        api = _OrtCApi.get() if backend in ("auto", "capi") else None
        if backend == "capi" and api is None:
            raise RuntimeError(f"capi backend unavailable: {_OrtCApi._failure}")
        if api is not None:
            self._init_capi(api)
            self.backend = "capi"
        else:
            self._init_pybind()
            self.backend = "pybind"
        self.status = RUNNER_READY

    # -- binding: slot s, parity p reads state[s, p] and writes state[s, 1 - p]
    def _io(self, s: int, p: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        i = self.model.info
        ins = {INPUT_FEATURES: self.features[s:s + 1]}
        outs: dict[str, np.ndarray] = {}
        if i.recurrent:
            ins[INPUT_STATE] = self.state[s, p:p + 1]
            outs[OUTPUT_STATE] = self.state[s, 1 - p:2 - p]
        if i.has_logits:
            outs[OUTPUT_LOGITS] = self.out[s:s + 1, :i.n_logits]
        if i.has_alpha:
            outs[OUTPUT_ALPHA] = self.out[s:s + 1, i.n_logits:]
        return ins, outs

    def _init_capi(self, api: _OrtCApi) -> None:
        self._api = api
        self._session = api.create_session(self.model.data)
        c = self.ctl
        c[C_RUN_FN] = api.run_with_binding_addr
        c[C_SESSION] = self._session
        c[C_RELEASE_STATUS] = api.release_status_addr
        for s in range(self.n_slots):
            for p in range(2):
                ins, outs = self._io(s, p)
                vin = {k: api.tensor(a, a.shape) for k, a in ins.items()}
                vout = {k: api.tensor(a, a.shape) for k, a in outs.items()}
                self._values += list(vin.values()) + list(vout.values())
                b = api.binding(self._session, vin, vout)
                self._bindings.append(b)
                c[C_HEADER + 2 * s + p] = b

    def _init_pybind(self) -> None:
        import onnxruntime as ort

        self._sess = ort.InferenceSession(self.model.data, session_options(),
                                          providers=["CPUExecutionProvider"])
        for s in range(self.n_slots):
            for p in range(2):
                ins, outs = self._io(s, p)
                b = self._sess.io_binding()
                for k, a in ins.items():
                    v = ort.OrtValue.ortvalue_from_numpy(a)
                    self._keep.append(v)
                    b.bind_ortvalue_input(k, v)
                for k, a in outs.items():
                    v = ort.OrtValue.ortvalue_from_numpy(a)
                    self._keep.append(v)
                    b.bind_ortvalue_output(k, v)
                self._keep.append(b)
                self._iobs.append(b._iobinding)
        self._run = self._sess._sess.run_with_iobinding

    def step(self, slot: int = 0) -> bool:
        """Run the model on ``features[slot]``; False if the outputs are not finite."""
        if self.backend == "capi":
            return bool(model_step(self.ctl, self.state, self.out, slot))
        p = self.ctl[C_HEADER + 2 * self.n_slots + slot]
        try:
            self._run(self._iobs[2 * slot + p], None)
        except Exception:  # pragma: no cover - onnxruntime error on a validated model
            self.ctl[C_RUN_ERRORS] += 1
            self.out[slot, -1] = 0.0
            return False
        return bool(_finish_step(self.ctl, self.state, self.out, slot))

    def fast_step(self) -> Any:
        """The cheapest Python callable ``f(slot) -> bool`` for this backend.

        capi: ``functools.partial(step_by_address, ctl address)``: one njit call with
        two ints. The partial keeps the runner alive, so its addresses stay valid.
        """
        if self.backend == "capi":
            f = functools.partial(step_by_address, self.ctl.ctypes.data)
            f.runner = self  # type: ignore[attr-defined]
            return f
        return self.step

    def next_state(self, slot: int = 0) -> np.ndarray:
        """The state the next step of ``slot`` will read (a view)."""
        p = self.ctl[C_HEADER + 2 * self.n_slots + slot]
        return self.state[slot, p, :self.model.info.state_size]

    def reset(self, slot: int | None = None) -> None:
        """Zero the recurrent state (all slots, or one), e.g. after a book reset."""
        if slot is None:
            self.state[:] = 0.0
            self.out[:] = 0.0
        else:
            self.state[slot] = 0.0
            self.out[slot] = 0.0

    @property
    def nonfinite(self) -> int:
        return int(self.ctl[C_NONFINITE])

    @property
    def run_errors(self) -> int:
        return int(self.ctl[C_RUN_ERRORS])

    def last_error(self) -> str | None:
        """The first unread onnxruntime error message of the hot path (then cleared)."""
        st = int(self.ctl[C_LAST_STATUS])
        if not st or self._api is None:
            return None
        self.ctl[C_LAST_STATUS] = 0
        msg = self._api.message(st)
        self._api.ReleaseStatus(ctypes.c_void_p(st))
        return msg

    def close(self) -> None:
        if self.status == RUNNER_CLOSED:
            return
        self.status = RUNNER_CLOSED
        api = self._api
        if api is not None:
            self.last_error()
            for b in self._bindings:
                api.ReleaseIoBinding(ctypes.c_void_p(b))
            for v in self._values:
                api.ReleaseValue(ctypes.c_void_p(v))
            if self._session:
                api.ReleaseSession(ctypes.c_void_p(self._session))
            self._bindings, self._values, self._session = [], [], 0
            self.ctl[C_RUN_FN] = 0
        self._iobs, self._keep = [], []

    def __enter__(self) -> ModelRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # not contextlib.suppress: at interpreter shutdown the module's globals (contextlib
        # among them) may already be None, and the with statement itself would raise
        try:  # noqa: SIM105
            self.close()
        except Exception:  # nothing to report to at shutdown
            pass
