"""The numba kernels' Python logic, run uncompiled (NUMBA_DISABLE_JIT=1).

Compiled code hides nothing here, but a kernel that only works when numba compiles
it (or whose pure-Python reading is wrong) would still pass the other tests; this
runs every kernel of gradkit._numba.metrics as plain Python, in a subprocess, and
checks it against the C++ twin on the same small inputs.
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
    same(nb.log_loss_sum(y, prob, weights, 1e-15, 1),
         cpp.log_loss_sum(y, prob, weights, 1e-15, 1))
    same(nb.regression_stats(reg_true, reg_pred, weights, 1),
         cpp.regression_stats(reg_true, reg_pred, weights, 1))
same(nb.all_finite(scores, 1), cpp.all_finite(scores, 1))
print("ok")
"""


def test_numba_kernels_run_uncompiled_and_agree_with_cpp():
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"
