"""The numba kernels' Python logic, run uncompiled (NUMBA_DISABLE_JIT=1).

Compiled code hides nothing here, but a kernel that only works when numba compiles
it (or whose pure-Python reading is wrong) would still pass the other tests; this
runs every kernel of gradkit._numba.metrics, .linear and .compress as plain
Python, in a subprocess, and checks it against the C++ twin on the same small inputs.
"""

import os
import subprocess
import sys

SCRIPT = r"""
import numpy as np
from gradkit._core import metrics as cpp
from gradkit._numba import metrics as nb
import numba

assert numba.config.DISABLE_JIT

rng = np.random.default_rng(0)
n = 600
y = rng.integers(0, 3, n)
p = rng.integers(0, 3, n)
w = rng.random(n) * (rng.random(n) > 0.1)
pos = (y == 1).astype(np.uint8)
scores = np.round(rng.random(n), 1)
prob = rng.random((n, 3))
prob /= prob.sum(axis=1, keepdims=True)
reg_true, reg_pred = rng.random((n, 2)), rng.random((n, 2))

def same(a, b):
    if isinstance(a, tuple):
        assert len(a) == len(b)
        for x, z in zip(a, b):
            same(x, z)
    elif a is None or b is None:
        assert a is None and b is None
    else:
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-13)

for weights in (None, w):
    same(nb.label_table(y, p, weights, 0, 3, 1),
         cpp.label_table(y, p, weights, 0, 3, 1))
    for kernel in ("binary_curve", "binary_auc", "binary_average_precision"):
        same(getattr(nb, kernel)(pos, scores, weights, 1),
             getattr(cpp, kernel)(pos, scores, weights, 1))
    same(nb.binary_average_precision(pos, scores, weights, 1, 3.0, 2.0),
         cpp.binary_average_precision(pos, scores, weights, 1, 3.0, 2.0))
    for bounds in (np.array([]), np.array([0.2, 0.5, 0.5]), np.linspace(0, 1, 70)):
        same(nb.range_partition(pos, scores, weights, bounds),
             cpp.range_partition(pos, scores, weights, bounds))
    same(nb.log_loss_sum(y, prob, weights, 1e-15, 1),
         cpp.log_loss_sum(y, prob, weights, 1e-15, 1))
    same(nb.regression_stats(reg_true, reg_pred, weights, 1),
         cpp.regression_stats(reg_true, reg_pred, weights, 1))
same(nb.all_finite(scores, 1), cpp.all_finite(scores, 1))

# linear: loss_grad on every loss, sgd_epoch on every single-output loss, dense
# (float64 and float32) and CSR, with an L2 run that resets wscale, with and
# without the loss sums; 21 features: a dense row is a block of 16 lanes and 5 more.
import scipy.sparse as sp
from gradkit._core import linear as cpp_linear
from gradkit._numba import linear as nb_linear

n, d = 24, 21
X = rng.standard_normal((n, d))
X[rng.random((n, d)) < 0.4] = 0
csr = sp.csr_matrix(X)
layouts = [
    (X, None, None),
    (X.astype(np.float32), None, None),
    (csr.data, csr.indices.astype(np.int32), csr.indptr.astype(np.int64)),
]
weights = rng.random(n) * (rng.random(n) > 0.2)
rows = rng.integers(0, n, 2 * n).astype(np.int64)
params = {1: 0.7, 2: 0.1, 3: 0.1, 5: 1.0, 6: 1.0}
for layout in layouts:
    dtype = layout[0].dtype
    for code in range(9):
        k = 3 if code == 8 else 1
        if code == 8:
            y = rng.integers(0, k, n).astype(np.float64)
        elif code == 4:
            y = (rng.random(n) < 0.5).astype(np.float64)
        elif code >= 5:
            y = np.where(rng.random(n) < 0.5, 1.0, -1.0)
        else:
            y = rng.standard_normal(n)
        coef, intercept = rng.standard_normal((k, d)), rng.standard_normal(k)
        param = params.get(code, 0.0)
        for sample_weight, used in ((None, None), (weights, rows)):
            results = []
            for module in (nb_linear, cpp_linear):
                g, gi = np.empty((k, d)), np.empty(k)
                total = module.loss_grad(*layout, y, sample_weight, used, coef,
                                         intercept, code, param, g, gi, 2)
                results.append((total, g, gi))
            same(*results)
        if code == 8:
            continue
        runs = ((3, 2, 1e-3, 0.05, True), (1, 1, 1.0, 0.6, True),
                (1, 0, 1e-3, 0.05, False))
        for penalty, average, alpha, eta0, compute_loss in runs:
            results = []
            for module in (nb_linear, cpp_linear):
                w, aw, q = (np.zeros(d, dtype) for _ in range(3))
                state = np.array([0.0, 0.0, 1.0, eta0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0])
                sums = tuple(
                    module.sgd_epoch(*layout, y, weights, np.arange(n), w, aw, q,
                                     state, code, param, penalty, alpha, 0.3, 1,
                                     eta0, 0.25, 0.0, True, 1.0, 2.0, 0.5, average,
                                     compute_loss)
                    for _ in range(2)
                )
                results.append((w, aw, q, state, sums))
            same(*results)

def custom_loss(y, p):
    return 0.5 * (p - y) * (p - y)

def custom_dloss(y, p):
    return p - y

custom = nb_linear.custom_kernels(custom_loss, custom_dloss)
g, gi = np.empty((1, d)), np.empty(1)
total = custom.loss_grad(X, None, None, y, None, None, coef[:1], intercept[:1], 7,
                         0.0, g, gi, 1)
g0, gi0 = np.empty((1, d)), np.empty(1)
total0 = cpp_linear.loss_grad(X, None, None, y, None, None, coef[:1],
                              intercept[:1], 0, 0.0, g0, gi0, 1)
same((total, g, gi), (total0, g0, gi0))
print("ok")
"""

# The compress kernels agree bit for bit; 5003 elements so that the radix select
# takes its second counting pass (fewer than 4096 candidates are gathered at once).
COMPRESS_SCRIPT = r"""
import numpy as np
import numba
from gradkit._core import compress as cpp_compress
from gradkit._numba import compress as nb_compress
assert numba.config.DISABLE_JIT
rng = np.random.default_rng(0)

def same_bits(a, b):
    if isinstance(a, tuple):
        assert len(a) == len(b)
        for p, q in zip(a, b):
            same_bits(p, q)
    elif isinstance(a, (int, float)):
        assert type(a) is type(b) and a == b, (a, b)
    else:
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(a.view(np.uint8), b.view(np.uint8))

x = rng.standard_normal((6, 37)).astype(np.float32)
x[1] = 0.0           # a zero row
x[2] = 0.75          # a constant row
x[3, ::3] = 0.5      # ties of the rounding
lo_nb, hi_nb = nb_compress.row_minmax(x, 1)
lo_c, hi_c = cpp_compress.row_minmax(x, 1)
assert np.array_equal(lo_nb, lo_c) and np.array_equal(hi_nb, hi_c)
for qmin, qmax, symmetric in ((-128, 127, True), (0, 255, False), (-8, 7, False)):
    for fma_rounding in (False, True):
        for lo, hi in ((None, None), (lo_c, hi_c)):
            results = []
            for m in (nb_compress, cpp_compress):
                out = np.empty(x.shape, np.int8 if qmin < 0 else np.uint8)
                scale, zp = m.quantize_rows(x, lo, hi, qmin, qmax, symmetric,
                                            fma_rounding, out, 1)
                back = np.empty(x.shape, np.float32)
                m.dequantize_rows(out, scale, zp, back, 1)
                results.append((out, scale, zp, back))
            same_bits(*results)
# 5000 elements: above the 4096 candidates that are gathered at once, so the zeros
# take the second counting pass too.
for dtype in (np.float32, np.float64):
    w = rng.standard_normal(5003).astype(dtype)
    w[rng.random(w.size) < 0.9] = 0.0
    w[:20] = -0.0
    w[20:40] = 0.25
    for k in (1, 100, 4600, 4700, w.size):
        t_nb = nb_compress.magnitude_threshold(w, k, 1)
        same_bits(t_nb, cpp_compress.magnitude_threshold(w, k, 1))
        for ties in (0, t_nb[1], t_nb[1] + 3):
            p_nb = nb_compress.prune_mask(w, t_nb[0], ties, 1)
            same_bits(p_nb, cpp_compress.prune_mask(w, t_nb[0], ties, 1))
            o_nb = np.empty_like(w); o_c = np.empty_like(w)
            nb_compress.unpack_mask(p_nb[0], p_nb[1], o_nb, 1)
            cpp_compress.unpack_mask(p_nb[0], p_nb[1], o_c, 1)
            same_bits(o_nb, o_c)
print("ok")
"""


def run_uncompiled(script):
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"


def test_numba_kernels_run_uncompiled_and_agree_with_cpp():
    run_uncompiled(SCRIPT)


def test_numba_compress_kernels_run_uncompiled_and_agree_with_cpp():
    run_uncompiled(COMPRESS_SCRIPT)
