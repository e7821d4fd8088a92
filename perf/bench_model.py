"""Model inference benchmark: hot-path latency per call and batch throughput.

``python -m perf.bench_model [--out DIR] [--quick] [--model PATH]`` writes
``DIR/model.json``. The model is the shipped default (``core/models/default.onnx``).

Hot path (one feature row in, logits/alpha/state out, preallocated and bound):

* ``model_p50_us`` / ``model_p99_us`` / ``model_p999_us``: the call the daemon makes,
  ``ModelRunner.fast_step()(slot)`` with the default backend (capi: one njit call
  that runs ``OrtApi::RunWithBinding`` through its function pointer, derives alpha
  and checks NaN/inf). Timed call by call with ``perf_counter_ns`` (its own cost,
  ~0.05 µs, is included).
* ``model_in_njit_p50_us``: ``model_step`` called from inside an njit loop (what
  a fused tick kernel pays), per call, each sample a batch of 20 calls / 20.
* ``model_pybind_p50_us``: ``InferenceSession._sess.run_with_iobinding(iob, None)``
  plus the same finish kernel: the pybind11 path.
* the traps of DESIGN.md, measured on the same model for the record:
  ``model_trap_runoptions_p50_us`` (public ``run_with_iobinding`` with a
  ``RunOptions()``), ``model_trap_run_with_ort_values_p50_us`` and
  ``model_session_run_p50_us`` (plain ``InferenceSession.run`` with a feed dict).

The methods are interleaved in rounds so that a noisy neighbour slows them all
alike; percentiles are over every sample of every round, and ``best_round_p50``
(the lowest per-round median) is given beside each as a noise-free floor.

Batch: ``model_batch_rows_per_s`` (``Model.predict_batch`` over a feature matrix
of two instruments, state scan) and ``model_batch_step_rows_per_s`` (the same
through the step runner, row by row).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit

from core.model import C_HEADER, _finish_step, load_model, model_step
from perf._common import base_parser, best_rate, figure, now_iso, percentiles_us, write_result

TARGET_P50_US = 4.0
IN_NJIT_BATCH = 20


@njit(cache=True)
def _loop_model_step(ctl: Any, state: Any, out: Any, n: int) -> int:
    ok = 0
    for _ in range(n):
        ok += model_step(ctl, state, out, 0)
    return ok


def _time_calls(fn: Callable[[], Any], n: int) -> np.ndarray:
    ts = np.empty(n, np.int64)
    pc = time.perf_counter_ns
    for i in range(n):
        t0 = pc()
        fn()
        ts[i] = pc() - t0
    return ts


def main(argv: list[str] | None = None) -> int:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="ONNX model (default: the shipped default)")
    args = p.parse_args(argv)
    started = now_iso()

    import onnxruntime as ort

    model = load_model(args.model)
    rounds, per_round = (2, 500) if args.quick else (20, 5000)
    rng = np.random.default_rng(1)
    row = rng.normal(size=model.info.n_features).astype(np.float32)

    capi = model.runner(n_slots=1, backend="auto")
    capi.features[0] = row
    step = capi.fast_step()
    pyb = model.runner(n_slots=1, backend="pybind")
    pyb.features[0] = row
    run = pyb._sess._sess.run_with_iobinding
    iobs = pyb._iobs
    ctl, state, out = pyb.ctl, pyb.state, pyb.out
    par = C_HEADER + 2 * pyb.n_slots  # the parity word of slot 0

    def pybind_step() -> bool:
        run(iobs[ctl[par]], None)
        return bool(_finish_step(ctl, state, out, 0))

    sess = pyb._sess
    public_binding = sess.io_binding()
    feeds = {"features": pyb.features[0:1]}
    if model.info.recurrent:
        feeds["state_in"] = np.zeros((1, model.info.state_size), np.float32)
    for k, a in feeds.items():
        public_binding.bind_cpu_input(k, a)
    names = [o.name for o in sess.get_outputs()]
    for k in names:
        public_binding.bind_output(k)
    ro = ort.RunOptions()
    ort_feeds = {k: ort.OrtValue.ortvalue_from_numpy(a) for k, a in feeds.items()}
    methods: dict[str, Callable[[], Any]] = {
        "default": lambda: step(0),
        "pybind": pybind_step,
        "trap_runoptions": lambda: sess.run_with_iobinding(public_binding, ro),
        "trap_run_with_ort_values": lambda: sess.run_with_ort_values(names, ort_feeds),
        "session_run": lambda: sess.run(names, feeds),
    }
    if capi.backend == "capi":  # 20 calls inside one njit loop per sample
        c_ctl, c_state, c_out = capi.ctl, capi.state, capi.out
        methods["in_njit"] = lambda: _loop_model_step(c_ctl, c_state, c_out, IN_NJIT_BATCH)
    for fn in methods.values():  # warm-up (JIT, first runs)
        for _ in range(200):
            fn()
    samples: dict[str, list[np.ndarray]] = {k: [] for k in methods}
    gc.collect()
    gc.disable()
    try:
        for _ in range(rounds):
            for k, fn in methods.items():
                if k == "in_njit":
                    samples[k].append(_time_calls(fn, per_round // IN_NJIT_BATCH) // IN_NJIT_BATCH)
                    continue
                n = per_round if not k.startswith(("trap", "session")) else per_round // 5
                samples[k].append(_time_calls(fn, n))
    finally:
        gc.enable()
    assert capi.nonfinite == 0 and pyb.nonfinite == 0

    def stats(k: str) -> tuple[dict[str, float], float]:
        allv = np.concatenate(samples[k])
        best = min(float(np.median(s)) / 1e3 for s in samples[k])
        return percentiles_us(allv), best

    figs = []
    d, best = stats("default")
    extra = {"backend": capi.backend, "best_round_p50": round(best, 3)}
    figs.append(figure("model_p50_us", d["p50"], "us", TARGET_P50_US, "lower", **extra))
    figs.append(figure("model_p99_us", d["p99"], "us", None, "lower", backend=capi.backend))
    figs.append(figure("model_p999_us", d["p999"], "us", None, "lower", backend=capi.backend))
    if "in_njit" in samples:
        s, b = stats("in_njit")
        figs.append(figure("model_in_njit_p50_us", s["p50"], "us", None, "lower",
                           best_round_p50=round(b, 3),
                           note=f"per call, timed over batches of {IN_NJIT_BATCH} calls"))
    for k in ("pybind", "trap_runoptions", "trap_run_with_ort_values", "session_run"):
        s, b = stats(k)
        figs.append(figure(f"model_{k}_p50_us", s["p50"], "us", None, "lower",
                           p99=round(s["p99"], 3), best_round_p50=round(b, 3)))

    # batch: two instruments' rows interleaved, one state per instrument
    n = 20_000 if args.quick else 400_000
    X = rng.normal(size=(n, model.info.n_features)).astype(np.float32)
    g = (np.arange(n) % 2).astype(np.int64)
    model.predict_batch(X[:1000], g[:1000])
    rate = best_rate(lambda: model.predict_batch(X, g), n, 3)
    figs.append(figure("model_batch_rows_per_s", rate, "1/s", None, "higher",
                       method="scan" if model.info.kind == "ssm" else "auto"))
    m = 2_000 if args.quick else 100_000
    figs.append(figure("model_batch_step_rows_per_s",
                       best_rate(lambda: model.predict_batch(X[:m], g[:m], method="step"), m, 1),
                       "1/s", None, "higher"))
    capi.close()
    pyb.close()
    path = write_result("model", figs, args.out, started=started, model=str(model.path),
                        kind=model.info.kind, state_size=model.info.state_size,
                        ort_version=ort.__version__, rounds=rounds, per_round=per_round)
    for f in figs:
        print(f"{f['name']:40s} {f['value']:>14.3f} {f['unit']}"
              + (f"  (target {f['target']}, met={f['met']})" if f["target"] is not None else ""))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
