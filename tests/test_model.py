"""The model contract, hot-path inference (both backends) and batch inference."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from core import model as md
from core import train as tr
from core.feature_spec import FEATURE_NAMES, FEATURE_SPEC_VERSION, N_FEATURES, feature_spec

F = N_FEATURES
HORIZONS = (5, 20, 60)
TAUS = (0.0, 4.0, 32.0)
BACKENDS = ["pybind"] + ([] if md.capi_unavailable_reason() else ["capi"])


def make_fitted(kind: str = "ssm", seed: int = 0) -> tr.Fitted:
    """A model with random (but sane) weights: the exact function is known in float64."""
    rng = np.random.default_rng(seed)
    mean = rng.normal(size=F)
    std = rng.uniform(0.5, 2.0, size=F)
    cm = np.array([[-1.2, 0.0, 1.1], [-2.0, 0.1, 2.2], [-3.5, -0.1, 3.0]])
    if kind == "ssm":
        a = np.repeat([0.0 if t == 0 else np.exp(-1.0 / t) for t in TAUS], F)
        S = a.size
        params = {"decay": a, "state_mean": rng.normal(0, 0.1, S),
                  "state_std": rng.uniform(0.5, 1.5, S),
                  "W": rng.normal(0, 0.3, (S, 3 * len(HORIZONS))), "b": rng.normal(0, 0.1, 9),
                  "taus": np.array(TAUS)}
        return tr.Fitted("ssm", HORIZONS, mean, std, params, cm, 0.25, 1, state_size=S)
    params = {"W1": rng.normal(0, 0.4, (F, 16)), "b1": rng.normal(0, 0.1, 16),
              "W2": rng.normal(0, 0.4, (16, 9)), "b2": rng.normal(0, 0.1, 9)}
    return tr.Fitted("mlp", HORIZONS, mean, std, params, cm, 0.25, 0)


def write(tmp_path: Path, proto_or_bytes: Any, name: str = "m.onnx") -> Path:
    p = tmp_path / name
    data = (proto_or_bytes if isinstance(proto_or_bytes, bytes)
            else proto_or_bytes.SerializeToString())
    p.write_bytes(data)
    return p


def proto_of(f: tr.Fitted) -> onnx.ModelProto:
    return onnx.load_model_from_string(tr.export_onnx(f))


def set_meta(proto: onnx.ModelProto, key: str, value: str | None) -> onnx.ModelProto:
    props = [(p.key, p.value) for p in proto.metadata_props if p.key != key]
    del proto.metadata_props[:]
    for k, v in props + ([(key, value)] if value is not None else []):
        e = proto.metadata_props.add()
        e.key, e.value = k, v
    return proto


def sequence(n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, F)) * rng.uniform(0.5, 3, F) + rng.normal(size=F)
    return x.astype(np.float32)


def softmax_alpha(logits: np.ndarray, f: tr.Fitted) -> float:
    h = f.alpha_horizon
    z = logits[3 * h:3 * h + 3].astype(np.float64)
    p = np.exp(z - z.max())
    p /= p.sum()
    return float(p @ f.class_mean_ticks[h])


# --------------------------------------------------------------------------
# contract
# --------------------------------------------------------------------------


def expect_error(path: Path, *needles: str,
                 spec: dict[str, Any] | None = None) -> md.ModelContractError:
    with pytest.raises(md.ModelContractError) as ei:
        md.load_model(path, spec)
    text = str(ei.value)
    for n in needles:
        assert n in text, f"{n!r} not in:\n{text}"
    return ei.value


def test_valid_models_load(tmp_path: Path) -> None:
    for kind in ("ssm", "mlp"):
        f = make_fitted(kind)
        m = md.load_model(write(tmp_path, proto_of(f), f"{kind}.onnx"))
        i = m.info
        assert (i.kind, i.horizons, i.n_features) == (kind, HORIZONS, F)
        assert i.feature_names == FEATURE_NAMES
        assert i.feature_version == FEATURE_SPEC_VERSION
        assert i.state_size == (F * len(TAUS) if kind == "ssm" else 0)
        assert i.outputs == (("logits", "state_out") if kind == "ssm" else ("logits",))
        np.testing.assert_allclose(i.class_mean_ticks, f.class_mean_ticks)
        meta = {p.key: p.value for p in m.proto.metadata_props}
        assert json.loads(meta["feature_spec"]) == feature_spec()


def test_wrong_feature_names_or_order(tmp_path: Path) -> None:
    p = write(tmp_path, proto_of(make_fitted()))
    renamed = dict(feature_spec())
    renamed["names"] = [*FEATURE_NAMES[:-1], "queue_position"]
    e = expect_error(p, "missing from the model: ['queue_position']",
                     "unknown to the running spec: ['log_time_since_trade']", spec=renamed)
    assert len(e.problems) == 2
    swapped = dict(feature_spec())
    names = list(FEATURE_NAMES)
    names[3], names[5] = names[5], names[3]
    swapped["names"] = names
    expect_error(p, "position 3", repr(FEATURE_NAMES[3]), repr(FEATURE_NAMES[5]), "different order",
                 spec=swapped)
    shorter = {"version": FEATURE_SPEC_VERSION, "names": list(FEATURE_NAMES[:-1])}
    expect_error(p, "unknown to the running spec", "has shape [1, 11], expected [1, 10]",
                 spec=shorter)


def test_wrong_version(tmp_path: Path) -> None:
    p = write(tmp_path, proto_of(make_fitted()))
    newer = {"version": FEATURE_SPEC_VERSION + 1, "names": list(FEATURE_NAMES)}
    expect_error(p, f"trained on version {FEATURE_SPEC_VERSION}",
                 f"running feature spec is version {FEATURE_SPEC_VERSION + 1}", spec=newer)
    proto = set_meta(proto_of(make_fitted()), "contract_version", "2")
    expect_error(write(tmp_path, proto, "c.onnx"), "contract_version 2")


@pytest.mark.parametrize("key", md.REQUIRED_META)
def test_missing_metadata(tmp_path: Path, key: str) -> None:
    proto = set_meta(proto_of(make_fitted()), key, None)
    expect_error(write(tmp_path, proto), "missing metadata", repr(key))


def test_missing_alpha_metadata_for_logits_only_model(tmp_path: Path) -> None:
    for key in ("class_mean_ticks", "alpha_horizon"):
        proto = set_meta(proto_of(make_fitted()), key, None)
        expect_error(write(tmp_path, proto), f"missing metadata '{key}'", "derive alpha")


def test_bad_metadata_values(tmp_path: Path) -> None:
    cases = [("feature_spec", "{not json", "not valid JSON"),
             ("horizons", "[]", "non-empty list"),
             ("classes", '["up", "down"]', "'classes'"),
             ("class_mean_ticks", "[[0, 1]]", "class_mean_ticks"),
             ("alpha_horizon", "7", "not a horizon index"),
             ("outputs", '["alpha"]', "does not match the graph outputs"),
             ("state_size", "3", "has shape [1, 33], expected [1, 3]")]
    for key, value, needle in cases:
        proto = set_meta(proto_of(make_fitted()), key, value)
        expect_error(write(tmp_path, proto), needle)


def _retype(proto: onnx.ModelProto, which: str, name: str, dims: list[int] | None = None,
            dtype: int | None = None) -> onnx.ModelProto:
    for vi in getattr(proto.graph, which):
        if vi.name == name:
            if dims is not None:
                for d, v in zip(vi.type.tensor_type.shape.dim, dims, strict=True):
                    d.dim_value = v
            if dtype is not None:
                vi.type.tensor_type.elem_type = dtype
    return proto


def _graph_model(nodes: list[Any], inputs: list[Any], outputs: list[Any], inits: list[Any],
                 meta_from: onnx.ModelProto, outputs_meta: list[str]) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "g", inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    for p in meta_from.metadata_props:
        e = m.metadata_props.add()
        e.key, e.value = p.key, p.value
    return set_meta(m, "outputs", json.dumps(sorted(outputs_meta)))


def test_wrong_shapes_and_dtypes(tmp_path: Path) -> None:
    base = proto_of(make_fitted())
    S = F * len(TAUS)
    p = write(tmp_path, _retype(proto_of(make_fitted()), "input", "features", dims=[2, F]))
    expect_error(p, "input 'features' has shape [2, 11], expected [1, 11]")
    p = write(tmp_path, _retype(proto_of(make_fitted()), "output", "logits", dims=[1, 6]))
    expect_error(p, "output 'logits' has shape [1, 6], expected [1, 9]")
    # a graph on doubles: consistent for the checker, refused by the contract
    vi = helper.make_tensor_value_info
    dbl = _graph_model([helper.make_node("Gemm", ["features", "w", "b"], ["logits"])],
                       [vi("features", TensorProto.DOUBLE, [1, F])],
                       [vi("logits", TensorProto.DOUBLE, [1, 9])],
                       [numpy_helper.from_array(np.zeros((F, 9)), "w"),
                        numpy_helper.from_array(np.zeros(9), "b")],
                       set_meta(proto_of(make_fitted("mlp")), "x", None), ["logits"])
    expect_error(write(tmp_path, dbl), "input 'features' has dtype DOUBLE, expected FLOAT",
                 "output 'logits' has dtype DOUBLE")
    # symbolic batch dimension instead of 1
    sym = proto_of(make_fitted())
    sym.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    expect_error(write(tmp_path, sym), "has shape ['N', 11]")
    # recurrent input without the recurrent output
    nodes = [helper.make_node("Gemm", ["features", "w", "b"], ["logits"])]
    half = _graph_model(nodes, [vi("features", TensorProto.FLOAT, [1, F]),
                                vi("state_in", TensorProto.FLOAT, [1, S])],
                        [vi("logits", TensorProto.FLOAT, [1, 9])],
                        [numpy_helper.from_array(np.zeros((F, 9), np.float32), "w"),
                         numpy_helper.from_array(np.zeros(9, np.float32), "b")], base, ["logits"])
    expect_error(write(tmp_path, half), "need both 'state_in' and 'state_out'")
    # no alpha and no logits
    none = _graph_model([helper.make_node("Relu", ["features"], ["other"])],
                        [vi("features", TensorProto.FLOAT, [1, F])],
                        [vi("other", TensorProto.FLOAT, [1, F])], [], base, ["other"])
    e = expect_error(write(tmp_path, none), "no 'alpha' or 'logits' output",
                     "unexpected outputs ['other']")
    assert "metadata state_size is 33" in str(e)


def test_not_onnx(tmp_path: Path) -> None:
    expect_error(write(tmp_path, b"", "empty.onnx"), "not an ONNX file")
    expect_error(write(tmp_path, b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "png.onnx"),
                 "not an ONNX file")
    expect_error(write(tmp_path, b"feature,alpha\n1,2\n", "csv.onnx"), "not an ONNX file")
    expect_error(tmp_path / "absent.onnx", "cannot read the file")
    # parses as protobuf but the graph is broken: the checker's message is passed on
    broken = proto_of(make_fitted())
    broken.graph.node[0].input[1] = "no_such_tensor"
    expect_error(write(tmp_path, broken), "invalid ONNX model", "no_such_tensor")


# --------------------------------------------------------------------------
# inference equals the numpy reference of the same model
# --------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["ssm", "mlp"])
def test_step_equals_numpy_reference(tmp_path: Path, backend: str, kind: str) -> None:
    f = make_fitted(kind, seed=3)
    m = md.load_model(write(tmp_path, proto_of(f)))
    X = sequence(200)
    with m.runner(backend=backend) as r:
        assert r.backend == backend
        state = None
        for x in X:
            r.features[0] = x  # the feature kernel writes the bound row in place
            assert r.step(0)
            ref, state = f.step_reference(x, state)
            np.testing.assert_allclose(r.logits[0], ref, rtol=1e-4, atol=2e-5)
            assert r.alpha[0] == pytest.approx(softmax_alpha(ref, f), rel=1e-4, abs=1e-5)
            if state is not None:
                np.testing.assert_allclose(r.next_state(0), state, rtol=1e-4, atol=2e-5)
        # the plain InferenceSession agrees too
        out = m.run_reference(X[-1], None if kind == "mlp" else np.zeros(f.state_size))
        ref, _ = f.step_reference(X[-1], None)
        np.testing.assert_allclose(out["logits"][0], ref, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_states_swap_without_copy(tmp_path: Path, backend: str) -> None:
    f = make_fitted()
    m = md.load_model(write(tmp_path, proto_of(f)))
    with m.runner(backend=backend) as r:
        buffers = [r.state[0, 0].ctypes.data, r.state[0, 1].ctypes.data]
        seen = []
        for x in sequence(4):
            seen.append(r.next_state(0).ctypes.data)
            r.features[0] = x
            r.step(0)
        assert seen == [buffers[0], buffers[1], buffers[0], buffers[1]]
        assert r.features.ctypes.data == r.features[0].ctypes.data  # bound row, never replaced
    # an external buffer (e.g. the daemon's arena) is bound as it is, not copied
    arena = np.zeros((2, F), np.float32)
    with m.runner(n_slots=2, backend=backend, features=arena) as r:
        assert r.features is arena
        arena[1] = sequence(1)[0]
        assert r.step(1)
        ref, _ = f.step_reference(arena[1], None)
        np.testing.assert_allclose(r.logits[1], ref, rtol=1e-4, atol=2e-5)
    with pytest.raises(ValueError, match="float32"):
        m.runner(n_slots=2, features=np.zeros((2, F)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_slots_keep_separate_states(tmp_path: Path, backend: str) -> None:
    f = make_fitted(seed=5)
    m = md.load_model(write(tmp_path, proto_of(f)))
    X = sequence(90, seed=2)
    slot = np.arange(90) % 3
    with m.runner(n_slots=3, backend=backend) as r:
        states: dict[int, Any] = {}
        for x, s in zip(X, slot.tolist(), strict=True):
            r.features[s] = x
            assert r.step(s)
            ref, states[s] = f.step_reference(x, states.get(s))
            np.testing.assert_allclose(r.logits[s], ref, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_output_halts_instead_of_raising(tmp_path: Path, backend: str,
                                                   bad: float) -> None:
    f = make_fitted(seed=7)
    m = md.load_model(write(tmp_path, proto_of(f)))
    X = sequence(6)
    with m.runner(n_slots=2, backend=backend) as r:
        for x in X[:3]:
            r.features[0] = x
            r.features[1] = x
            assert r.step(0) and r.step(1)
        r.features[0, 4] = bad
        assert r.step(0) is False
        assert r.nonfinite == 1 and r.alpha[0] == 0.0
        assert not r.state[0].any(), "the poisoned slot's state is reset"
        assert r.state[1].any(), "other instruments are untouched"
        # the next finite row starts again from an empty state
        r.features[0] = X[3]
        assert r.step(0)
        ref, _ = f.step_reference(X[3], None)
        np.testing.assert_allclose(r.logits[0], ref, rtol=1e-4, atol=2e-5)


def test_model_alpha_output_is_used(tmp_path: Path) -> None:
    """A third-party model with its own ``alpha`` output (no logits, stateless)."""
    vi = helper.make_tensor_value_info
    w = np.linspace(-1, 1, F).astype(np.float32).reshape(F, 1)
    base = set_meta(proto_of(make_fitted("mlp")), "class_mean_ticks", None)
    base = set_meta(base, "alpha_horizon", None)
    proto = _graph_model([helper.make_node("Gemm", ["features", "w", "b"], ["alpha"])],
                         [vi("features", TensorProto.FLOAT, [1, F])],
                         [vi("alpha", TensorProto.FLOAT, [1, 1])],
                         [numpy_helper.from_array(w, "w"),
                          numpy_helper.from_array(np.array([0.5], np.float32), "b")],
                         base, ["alpha"])
    m = md.load_model(write(tmp_path, proto))
    assert m.info.has_alpha and not m.info.has_logits
    x = sequence(3)
    for backend in BACKENDS:
        with m.runner(backend=backend) as r:
            r.features[0] = x[2]
            assert r.step(0)
            assert r.alpha[0] == pytest.approx(float(x[2] @ w[:, 0]) + 0.5, rel=1e-5)
    b = m.predict_batch(x)
    np.testing.assert_allclose(b.alpha, x @ w[:, 0] + 0.5, rtol=1e-5)


def test_closed_runner_and_bad_slot_do_not_crash(tmp_path: Path) -> None:
    m = md.load_model(write(tmp_path, proto_of(make_fitted())))
    for backend in BACKENDS:
        r = m.runner(n_slots=1, backend=backend)
        if backend == "capi":
            assert not md.model_step(r.ctl, r.state, r.out, 5)
        r.close()
        r.close()
        if backend == "capi":
            assert not r.step(0)
    with pytest.raises(ValueError):
        m.runner(n_slots=0)
    with pytest.raises(ValueError):
        m.runner(backend="gpu")


@pytest.mark.parametrize("backend", BACKENDS)
def test_runner_alive_at_interpreter_shutdown_closes_quietly(backend: str) -> None:
    """A runner still referenced when the interpreter exits is collected after the
    modules' globals are cleared: its ``__del__`` must close it without an error."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from core.model import load_model\n"
            f"sys._kept_runner = load_model().runner(n_slots=1, backend={backend!r})\n")
    root = Path(__file__).resolve().parents[1]
    p = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "Exception ignored" not in p.stderr and "Traceback" not in p.stderr, p.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_fast_step_is_the_same_step(tmp_path: Path, backend: str) -> None:
    m = md.load_model(write(tmp_path, proto_of(make_fitted(seed=8))))
    with m.runner(n_slots=2, backend=backend) as a, m.runner(n_slots=2, backend=backend) as b:
        fast = a.fast_step()
        for k, x in enumerate(sequence(40)):
            a.features[k % 2] = x
            b.features[k % 2] = x
            assert fast(k % 2) == b.step(k % 2) is True
            assert np.array_equal(a.out, b.out) and np.array_equal(a.state, b.state)
        a.features[1, 0] = np.nan
        assert not fast(1) and a.nonfinite == 1


def test_capi_and_pybind_agree_bit_for_bit(tmp_path: Path) -> None:
    if "capi" not in BACKENDS:
        pytest.skip(f"capi backend unavailable: {md.capi_unavailable_reason()}")
    m = md.load_model(write(tmp_path, proto_of(make_fitted(seed=9))))
    with m.runner(backend="capi") as a, m.runner(backend="pybind") as b:
        for x in sequence(50):
            a.features[0] = x
            b.features[0] = x
            a.step(0)
            b.step(0)
            assert np.array_equal(a.out, b.out) and np.array_equal(a.state, b.state)


# --------------------------------------------------------------------------
# batch inference equals step-by-step
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ssm", "mlp"])
def test_batch_equals_steps(tmp_path: Path, kind: str) -> None:
    f = make_fitted(kind, seed=4)
    m = md.load_model(write(tmp_path, proto_of(f)))
    X = sequence(400, seed=6)
    group = np.where(np.arange(400) % 5 < 3, 5602, 2871)  # two instruments, interleaved
    stepped = m.predict_batch(X, group, method="step")
    for method in ("auto", "scan" if kind == "ssm" else "onnx"):
        b = m.predict_batch(X, group, method=method)
        np.testing.assert_allclose(b.logits, stepped.logits, rtol=1e-4, atol=3e-5)
        np.testing.assert_allclose(b.alpha, stepped.alpha, rtol=1e-4, atol=3e-5)
        assert b.ok.all()
    if kind == "ssm":
        b = m.predict_batch(X, group)
        assert set(b.final_state) == {5602, 2871}
        for g in (5602, 2871):
            np.testing.assert_allclose(b.final_state[g], stepped.final_state[g],
                                       rtol=1e-4, atol=3e-5)
    with pytest.raises(ValueError):
        m.predict_batch(X[:, :5])
    X[10, 2] = np.nan
    b = m.predict_batch(X, group)
    assert not b.ok[10] and b.alpha[10] == 0.0


def test_shipped_default_model_meets_the_contract() -> None:
    m = md.load_model()
    assert m.info.kind == "ssm" and m.info.recurrent
    assert m.info.feature_names == FEATURE_NAMES
    training = m.info.training
    assert training["sources"] == ["synthetic:200000"] and training["config"]["seed"] == 7
    report = json.loads(md.DEFAULT_MODEL_PATH.with_suffix(".json").read_text())
    # it learned something out of sample at the shortest horizon
    wf = report["cross_validation"]["walk_forward"]["mean"][0]
    assert wf["log_loss"] < wf["baseline_log_loss"] and wf["accuracy"] > wf["baseline_accuracy"]
    with m.runner() as r:
        r.features[0] = sequence(1)[0]
        assert r.step(0) and np.isfinite(r.alpha[0])


def _ssm_reference(X: np.ndarray, gid: np.ndarray, w: tuple[np.ndarray, ...], mu: np.ndarray,
                   h: int, n_groups: int) -> tuple[np.ndarray, ...]:
    """The SSM batch in plain Python, float32 scalar by scalar in the kernel's order."""
    a, c, B, W, b = w
    f32 = np.float32
    S, K = W.shape
    last = np.zeros((n_groups, S), np.float32)
    logits = np.zeros((len(X), K), np.float32)
    alpha = np.zeros(len(X), np.float32)
    ok = np.zeros(len(X), np.bool_)
    with np.errstate(all="ignore"):
        for t in range(len(X)):
            prev = last[gid[t]]
            s = [f32(a[j] * prev[j]) + c[j] for j in range(S)]
            for f in range(X.shape[1]):
                s = [s[j] + f32(X[t, f] * B[f, j]) for j in range(S)]
            row = list(b)
            for j in range(S):
                row = [row[k] + f32(s[j] * W[j, k]) for k in range(K)]
            good = bool(np.all(np.isfinite(s)) and np.all(np.isfinite(row)))
            logits[t] = row
            last[gid[t]] = s if good else 0.0
            if good:  # the softmax-mean helper itself, on the float32 logits
                alpha[t] = md._expected_move(*row[3 * h:3 * h + 3], *mu[3 * h:3 * h + 3])
            ok[t] = good
    return logits, alpha, ok, last


def test_ssm_batch_kernel_matches_a_plain_reference_bit_for_bit() -> None:
    m = md.load_model()
    w = m._ssm_weights()
    assert w is not None
    a, c, B, W, b = w
    B, W = np.ascontiguousarray(B), np.ascontiguousarray(W)
    mu = m.info.class_mean_ticks.astype(np.float64).ravel()
    h = int(m.info.alpha_horizon)
    rng = np.random.default_rng(11)
    n = 300  # several 64-row blocks and a partial one
    X = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    gid = rng.integers(0, 3, n).astype(np.int64)
    X[70, 3] = np.nan  # a poisoned row: its state restarts, the block is redone row by row
    X[200, 1] = np.float32(1e37)  # finite state, logits far out: the finiteness bound fails
    ref_logits, ref_alpha, ref_ok, ref_last = _ssm_reference(X, gid, (a, c, B, W, b), mu, h, 3)
    assert not ref_ok[70] and ref_ok[:70].all() and ref_ok[71:200].all()
    for full in (True, False):
        last = np.zeros((3, a.shape[0]), np.float32)
        logits = np.zeros((n, W.shape[1] if full else 0), np.float32)
        alpha = np.full(n, -1.0, np.float32)
        ok = np.zeros(n, np.bool_)
        md._ssm_batch(X, gid, a, c, B, W, b, mu, h, last, logits, alpha, ok)
        assert np.array_equal(ok, ref_ok)
        assert np.array_equal(alpha.view(np.uint32), ref_alpha.view(np.uint32))
        assert np.array_equal(last.view(np.uint32), ref_last.view(np.uint32))
        if full:
            assert np.array_equal(logits.view(np.uint32), ref_logits.view(np.uint32))
