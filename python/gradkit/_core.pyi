"""Typed stub of gradkit._core, the compiled kernels.

This stub is also the contract of the kernels: gradkit._numba.metrics has the same
functions, arguments and results, and both backends must agree. Kernels never
validate user input; the public layer (gradkit._validation) has already checked
shapes, dtypes, contiguity and finiteness, and passes C-contiguous arrays only.
Every kernel takes `n_threads` (>= 1); work below about 2**16 elements runs on one
thread. Results must not depend on n_threads except in the last ulp of float sums.
"""

from types import ModuleType

import numpy as np
from numpy.typing import NDArray

class _Metrics(ModuleType):
    def label_table(
        self,
        y_true: NDArray,
        y_pred: NDArray,
        sample_weight: NDArray[np.float64] | None,
        lo: int,
        width: int,
        n_threads: int,
    ) -> tuple[NDArray[np.int64], NDArray[np.float64] | None, int, int, int, int]:
        """Joint counts of two 1-D label arrays whose values are integers.

        y_true and y_pred have the same length and the same dtype, one of int32,
        int64, uint8 (bool is passed as uint8), float32, float64.
        Returns (counts, weighted, n_outside, vmin, vmax, status):
        - counts: int64 (width, width); counts[t - lo, p - lo] is the number of i
          with y_true[i] == t and y_pred[i] == p, for t, p in [lo, lo + width).
        - weighted: float64 (width, width), the same with the sum of
          sample_weight[i] instead of 1; None when sample_weight is None.
        - n_outside: how many i have y_true[i] or y_pred[i] outside
          [lo, lo + width); they are not counted in the tables.
        - vmin, vmax: min and max over the values of both arrays, as int.
        - status: 0 when every value is an integer in [-2**62, 2**62];
          otherwise the largest code met: 1 an integer value beyond +-2**62,
          2 a finite float that is not an integer, 3 NaN or +-inf. When
          status != 0 the other outputs are unspecified.
        """
    def binary_curve(
        self,
        y_true: NDArray[np.uint8],
        y_score: NDArray[np.float32] | NDArray[np.float64],
        sample_weight: NDArray[np.float64] | None,
        n_threads: int,
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """(fps, tps, thresholds) of a binary problem, sklearn's _binary_clf_curve.

        y_true[i] is 1 for a positive and 0 for a negative sample; y_score finite.
        One entry per distinct score, scores in decreasing order: thresholds[j] is
        the score, tps[j] (fps[j]) the total weight (count when unweighted) of the
        positives (negatives) with score >= thresholds[j]. Samples whose weight is
        0 are ignored entirely. -0.0 and 0.0 are the same score. Empty input (or
        all weights 0) gives three empty arrays.
        """
    def binary_auc(
        self,
        y_true: NDArray[np.uint8],
        y_score: NDArray[np.float32] | NDArray[np.float64],
        sample_weight: NDArray[np.float64] | None,
        n_threads: int,
    ) -> tuple[float, float, float]:
        """(auc, pos_weight, neg_weight): area under the ROC curve of binary_curve.

        Equal to the trapezoid rule over the curve (tied scores form one diagonal
        segment), i.e. the Mann-Whitney statistic with half credit for ties:
        sum over tie groups g in decreasing score of
        neg_g * (pos_above_g + pos_g / 2), divided by pos_weight * neg_weight.
        auc is nan when pos_weight or neg_weight is 0.
        """
    def binary_average_precision(
        self,
        y_true: NDArray[np.uint8],
        y_score: NDArray[np.float32] | NDArray[np.float64],
        sample_weight: NDArray[np.float64] | None,
        n_threads: int,
    ) -> tuple[float, float]:
        """(ap, pos_weight): sklearn's average_precision_score of one binary column.

        ap = sum over tie groups g in decreasing score of
        (pos_g / pos_weight) * (tps_g / (tps_g + fps_g)), where tps_g and fps_g
        are the cumulative weights up to and including g (a precision whose
        denominator is 0 counts as 0). ap is nan when pos_weight is 0.
        """
    def log_loss_sum(
        self,
        y_index: NDArray[np.int64],
        y_prob: NDArray[np.float32] | NDArray[np.float64],
        sample_weight: NDArray[np.float64] | None,
        eps: float,
        n_threads: int,
    ) -> tuple[float, float]:
        """(sum_i w_i * loss_i, sum_i w_i) with w_i = 1 when unweighted.

        y_prob is 2-D (n, k): loss_i = -log(clip(y_prob[i, y_index[i]], eps, 1-eps)).
        y_prob is 1-D (n,), the probability of class 1 of two: the row is
        [1 - y_prob[i], y_prob[i]] and loss_i as above (clip after 1 - p).
        y_index[i] is in [0, k) (the caller guarantees it). Sums in float64.
        """
    def regression_stats(
        self,
        y_true: NDArray[np.float64],
        y_pred: NDArray[np.float64],
        sample_weight: NDArray[np.float64] | None,
        n_threads: int,
    ) -> tuple[
        float,
        NDArray[np.float64],
        NDArray[np.float64],
        NDArray[np.float64],
        NDArray[np.float64],
    ]:
        """(sum_w, sse, sae, mean_true, ss_tot) of 2-D (n, k) float64 arrays.

        Per output column j: sse[j] = sum_i w_i (y_true - y_pred)^2,
        sae[j] = sum_i w_i |y_true - y_pred|, mean_true[j] = sum_i w_i y_true / sum_w,
        ss_tot[j] = sum_i w_i (y_true - mean_true[j])^2 (a second pass, not raw
        sums of squares). sum_w = n when unweighted. Sums are accumulated in
        blocks (pairwise) so the error does not grow with n.
        """
    def all_finite(
        self, x: NDArray[np.float32] | NDArray[np.float64], n_threads: int
    ) -> bool:
        """True when no element of the C-contiguous array x (any ndim) is NaN or inf."""

metrics: _Metrics

class _Optim(ModuleType):
    """Fused optimizer steps: one pass over one parameter array, updated in place.

    All arrays of one call are 1-D (the caller ravels), C-contiguous, writeable,
    the same length and the same dtype (float32 or float64); the arithmetic is done
    in that dtype with the float scalars rounded to it, the way torch's CPU kernels
    do (torch.optim's single-tensor path, torch 2.13), including a fused
    multiply-add wherever torch's vectorized CPU kernel fuses one (add with alpha,
    lerp, the last step of addcmul; addcdiv is (value * m) / denom, unfused):
    cpp/include/gradkit/optim.hpp lists each. Work is split over n_threads chunks;
    every element is independent, so results never depend on n_threads.
    """

    def sgd_step(
        self,
        param: NDArray,
        grad: NDArray,
        momentum_buffer: NDArray | None,
        lr: float,
        momentum: float,
        dampening: float,
        nesterov: bool,
        weight_decay: float,
        maximize: bool,
        first_step: bool,
        n_threads: int,
    ) -> None:
        """torch.optim.SGD on one array, grad left unchanged:
        g = -grad if maximize else grad; if weight_decay: g = g + weight_decay * p;
        if momentum: buf = g when first_step else momentum * buf + (1 - dampening) * g
        (buf updated in place; momentum_buffer is None when momentum == 0);
        g = g + momentum * buf if nesterov else buf; p = p - lr * g.
        """
    def adam_step(
        self,
        param: NDArray,
        grad: NDArray,
        exp_avg: NDArray,
        exp_avg_sq: NDArray,
        max_exp_avg_sq: NDArray | None,
        step: int,
        lr: float,
        beta1: float,
        beta2: float,
        eps: float,
        weight_decay: float,
        decoupled: bool,
        maximize: bool,
        n_threads: int,
    ) -> None:
        """torch.optim.Adam (decoupled=False) / AdamW (decoupled=True) on one array.

        step is the count after this step (1 on the first). grad left unchanged.
        g = -grad if maximize else grad
        decoupled: p = p * (1 - lr * weight_decay); else g = g + weight_decay * p
        m = lerp(m, g, 1 - beta1): w = 1 - beta1; m + w * (g - m) if w < 0.5
            else g - (g - m) * (1 - w)            (torch's lerp)
        v = v * beta2 + (1 - beta2) * g * g       (mul_, then addcmul_: v + c * g * g)
        bc1 = 1 - beta1**step, bc2 = 1 - beta2**step in float64 (Python floats);
        step_size = lr / bc1; bc2_sqrt = bc2 ** 0.5 (libm pow, as torch writes it),
        both in float64 then rounded. weight_decay == 0 is skipped, as in torch.
        if max_exp_avg_sq is not None (amsgrad): vmax = max(vmax, v); use vmax for v.
        denom = sqrt(v) / bc2_sqrt + eps
        p = p + ((-step_size) * m) / denom        (addcdiv_, torch's CPU order)
        """

optim: _Optim
