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
        tp_offset: float = 0.0,
        fp_offset: float = 0.0,
    ) -> tuple[float, float]:
        """(ap, pos_weight): sklearn's average_precision_score of one binary column.

        ap = sum over tie groups g in decreasing score of
        (pos_g / pos_weight) * precision_g, where pos_g is the group's positive
        weight, pos_weight the total positive weight of the input, and
        precision_g = (tps_g + tp_offset) / ((tps_g + tp_offset) + (fps_g +
        fp_offset)) in float64, in that order; tps_g and fps_g are the cumulative
        weights (counts when unweighted) up to and including g. A precision whose
        denominator is 0 counts as 0. ap is nan when pos_weight is 0.

        The offsets are the positive and negative weight scoring above every
        sample of the input: given them, a score range of a bigger data set gets
        its terms of that set's average precision (multiply ap by pos_weight and
        divide by the set's positive weight). Zero offsets (the default) give the
        plain average precision, bit for bit the same as without them.
        """
    def range_partition(
        self,
        y_true: NDArray[np.uint8],
        y_score: NDArray[np.float64],
        sample_weight: NDArray[np.float64] | None,
        bounds: NDArray[np.float64],
    ) -> tuple[
        NDArray[np.uint8],
        NDArray[np.float64],
        NDArray[np.float64] | None,
        NDArray[np.int64],
        NDArray[np.float64],
    ]:
        """The rows grouped by score range, lowest range first, stably.

        y_true: (n,) label codes 0 or 1 (any nonzero code counts as 1 in
        label_weights, and is copied as it is); y_score: (n,) finite scores;
        sample_weight: (n,) or None; bounds: (m,) sorted ascending, m <= 254,
        repeats allowed. The range of a row is r = the number of bounds <= its
        score, in [0, m] (-0.0 and 0.0 are the same score; a repeated bound
        makes an empty range).
        Returns (codes_out, scores_out, weights_out, sizes, label_weights):
        - codes_out uint8 (n,), scores_out float64 (n,), weights_out float64 (n,)
          (None when sample_weight is None): y_true, y_score and sample_weight
          with the rows of range 0 first, then range 1, ..., each range's rows in
          their input order (np.argsort of the range ids, kind="stable").
        - sizes: int64 (m + 1,), the rows in each range.
        - label_weights: float64 (m + 1, 2); [r, c] is the total weight of the
          rows of range r with code c, added in row order from 0.0 (the row
          count when unweighted).
        Raises ValueError when m > 254 or bounds are not sorted or hold NaN.
        Serial, with no n_threads: it runs in one dask task per worker thread.
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

class _Linear(ModuleType):
    """Kernels of linear models: a fused loss and gradient, and one epoch of SGD.

    X is either dense, a C-contiguous (n, d) float32 or float64 array with
    X_indices = X_indptr = None, or CSR: X is the 1-D data array (float32 or
    float64), X_indices int32 column indices, X_indptr int64 (n + 1) row starts;
    then d = coef.shape[1] (or len(weights)). y, sample_weight: float64 (n,);
    sample_weight None means all 1.

    Loss codes (p the raw prediction x.w + b, y the target; dloss = d loss / d p):
      0 squared_error   0.5 (p - y)^2; dloss = p - y
      1 huber           r = p - y: 0.5 r^2 if |r| <= param else param (|r| - param / 2);
                        dloss = r if |r| <= param else +-param (the sign of r)
      2 epsilon_insensitive  max(0, |y - p| - param); dloss -1 if y - p > param,
                        1 if p - y > param, else 0
      3 squared_epsilon_insensitive  max(0, |y - p| - param)^2; dloss
                        -2 (y - p - param) if y - p > param,
                        2 (p - y - param) if p - y > param, else 0
      4 log_loss        y in {0, 1}: sklearn's half binomial loss, log1pexp(p) - y p
                        with its log1pexp cut-offs (-37, -2, 18, 33.3); dloss as
                        sklearn's cgradient_half_binomial: p > -37: e = exp(-p),
                        ((1 - y) - y e) / (1 + e); else exp(p) - y
      5 hinge           y in {-1, 1}, z = p y: param - z if z <= param else 0;
                        dloss -y if z <= param else 0 (param 0: the perceptron)
      6 squared_hinge   z = param - p y: z^2 if z > 0 else 0;
                        dloss -2 y z if z > 0 else 0
      7 modified_huber  z = p y: 0 if z >= 1, (1 - z)^2 if z >= -1, else -4 z;
                        dloss 0, -2 (1 - z) y, -4 y
      8 multinomial     k = coef.shape[0] >= 2 outputs, y the class index (0..k-1)
                        stored as float64: loss logsumexp(p) - p[y] (max subtracted
                        first), dloss_j = softmax(p)_j - [j == y]
    Codes 0-7 are single-output: coef has one row. sklearn (1.9,
    sklearn/_loss/_loss.pyx.tp
    and sklearn/linear_model/_sgd_fast.pyx.tp) is the reference for all of them.
    """

    def loss_grad(
        self,
        X: NDArray,
        X_indices: NDArray[np.int32] | None,
        X_indptr: NDArray[np.int64] | None,
        y: NDArray[np.float64],
        sample_weight: NDArray[np.float64] | None,
        rows: NDArray[np.int64] | None,
        coef: NDArray[np.float64],
        intercept: NDArray[np.float64],
        loss: int,
        loss_param: float,
        grad_coef: NDArray[np.float64],
        grad_intercept: NDArray[np.float64],
        n_threads: int,
    ) -> float:
        """Loss and gradient of a linear model in one pass over the rows of X.

        coef float64 (k, d), intercept float64 (k,); p_i = coef @ x_i + intercept.
        rows: the row indices to use (int64, any order, repeats allowed), or None for
        all n rows. Over the rows used, with w_i = sample_weight[i] (1 when None):
          returns  sum_i w_i loss(y_i, p_i)                       (float64)
          grad_coef[j, :] = sum_i w_i dloss_j(y_i, p_i) x_i      (overwritten)
          grad_intercept[j] = sum_i w_i dloss_j(y_i, p_i)        (overwritten)
        No averaging, no penalty: the caller adds those. Each row of X is read once
        (the dot products and the gradient update of a row happen while it is in
        cache). Accumulation in float64, one partial per chunk of rows (parallel.hpp
        chunking of len(rows)), combined in chunk order: bitwise reproducible for a
        given n_threads. Rows with w_i == 0 still count as read but add nothing.
        """
    def sgd_epoch(
        self,
        X: NDArray,
        X_indices: NDArray[np.int32] | None,
        X_indptr: NDArray[np.int64] | None,
        y: NDArray[np.float64],
        sample_weight: NDArray[np.float64] | None,
        order: NDArray[np.int64],
        weights: NDArray,
        average_weights: NDArray | None,
        l1_q: NDArray | None,
        state: NDArray[np.float64],
        loss: int,
        loss_param: float,
        penalty: int,
        alpha: float,
        l1_ratio: float,
        learning_rate: int,
        eta0: float,
        power_t: float,
        optimal_init: float,
        fit_intercept: bool,
        intercept_decay: float,
        weight_pos: float,
        weight_neg: float,
        average: int,
        compute_loss: bool,
    ) -> tuple[float, float]:
        """One epoch of sklearn's plain SGD (_plain_sgd in _sgd_fast.pyx.tp, 1.9),
        one sample at a time, over the rows order[0], order[1], ... (the caller has
        shuffled them and left out validation rows). Single-threaded: SGD is
        sequential. Loss codes 0-7 only.

        weights, average_weights (or None when average == 0) and l1_q (or None
        unless penalty is 2 or 3) are 1-D length d, the dtype of X (T), updated in
        place. weights holds sklearn's WeightVector w_data: the true weights are
        weights * state[5] (wscale).
        state float64, 10 entries, read at the start and written back at the end:
          0 intercept, 1 average_intercept, 2 t, 3 eta, 4 u (cumulative L1 penalty),
          5 wscale, 6 sq_norm, 7 l1_norm, 8 average_a, 9 average_b
        (WeightVector's fields; the caller starts with wscale 1, sq_norm = w.w,
        l1_norm = |w|_1, average_a 0, average_b 1, eta = eta0, u 0, t = est.t_).
        penalty: 0 none, 1 l2, 2 l1, 3 elasticnet (l1_ratio is forced to 0 for l2
        and 1 for l1, as sklearn does). learning_rate: 1 constant, 2 optimal,
        3 invscaling, 4 adaptive (eta is state[3], which the caller divides by 5).
        Per sample exactly as sklearn's loop body, with sklearn's types (T for
        w_data, the value of dot, the c of add and scale; double elsewhere) and its
        order of operations: eta by schedule, dloss clipped to +-1e12,
        update = -eta * dloss * class_weight * sample_weight (class_weight is
        weight_pos when y > 0 else weight_neg), L2 scale by
        max(0, 1 - (1 - l1_ratio) eta alpha) with reset below wscale 1e-9 (float64)
        or 1e-6 (float32), add when update != 0, intercept += update *
        intercept_decay, averaging when 0 < average <= t, L1 truncated gradient,
        t += 1. When compute_loss, returns (sumloss, objective_sum) as sklearn sums
        them (objective_sum adds alpha ((1 - l1_ratio) 0.5 sq_norm + l1_ratio
        l1_norm) per sample when penalty > 0); otherwise (0.0, 0.0).
        For dense X every feature index 0..d-1 is "non-zero", as in sklearn's
        ArrayDataset. The next row is prefetched while the current one is used.

        Types for float32 (T = float): y, sample_weight, the class weight and
        their product are rounded to T, as sklearn's float32 dataset does.

        Summation order. CSR rows sum over their stored entries in order, exactly
        as sklearn. Dense rows use 16 lanes for every sum over the features: the
        dot product w.x and add()'s two norm accumulators (sum w^2, sum |w|).
        Lane l (0..15) accumulates, in double from 0.0, the terms of the features
        j = l, l + 16, l + 32, ... in increasing j; the lanes are then combined
        as t8[l] = s[l] + s[l + 8] (l < 8), t4[l] = t8[l] + t8[l + 4] (l < 4),
        t2[l] = t4[l] + t4[l + 2] (l < 2), sum = t2[0] + t2[1]. This breaks the
        100-long chain of dependent additions per sample that sklearn's order
        imposes (the floor of its speed) at the cost of bitwise equality: dense
        results equal sklearn's to rounding (~1e-12 relative per sum), and the
        two backends still agree bit for bit.
        """

linear: _Linear

class _Compress(ModuleType):
    """Kernels of model compression: per-row min/max, quantize and dequantize with
    one (scale, zero_point) per row, and magnitude pruning to a bitmask.

    Every result is exact (nothing is summed in floating point), so the two backends
    agree bit for bit and no result depends on n_threads. Work over n elements runs
    on t = min(n_threads, max(1, n // 2**16)) threads. Arrays are C-contiguous; x is
    finite (the public layer checked it). "rne" is round half to even.

    The row layout serves every granularity: per tensor is one row (x.reshape(1,
    -1)), per channel one row per channel (the channel axis moved first), per group
    one row per group of consecutive elements (x.reshape(-1, group_size)).
    """

    def row_minmax(
        self, x: NDArray[np.float32], n_threads: int
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """(lo, hi): min and max of each row of a 2-D float32 x, r >= 1 rows of c >= 1
        columns. Rows are split between threads when r < t, so one huge row (per
        tensor) is still parallel. Which of -0.0 / 0.0 is returned is unspecified
        (they compare equal and nothing downstream tells them apart)."""
    def quantize_rows(
        self,
        x: NDArray[np.float32],
        lo: NDArray[np.float32] | None,
        hi: NDArray[np.float32] | None,
        qmin: int,
        qmax: int,
        symmetric: bool,
        fma_rounding: bool,
        out: NDArray[np.int8] | NDArray[np.uint8],
        n_threads: int,
    ) -> tuple[NDArray[np.float32], NDArray[np.int32]]:
        """Quantize each row of a 2-D float32 x with its own (scale, zero_point),
        computed from the row's range the way torch's MinMax observers do
        (torch/ao/quantization/observer.py, _calculate_qparams), all in float32.

        Range of row i: lo[i], hi[i] when given (both are, or neither); when both are
        None the kernel takes the min and max of row i itself, in the same pass that
        quantizes it (the row is still in cache), so per channel statistics cost no
        extra read of x.
        Parameters, eps = float32 epsilon (2**-23):
          min_neg = min(lo, 0), max_pos = max(hi, 0)
          symmetric: scale = max(max(-min_neg, max_pos) / float32((qmax - qmin) / 2),
                                 eps)
                     zero_point = 0 if qmin < 0 else (qmin + qmax + 1) // 2
          affine:    scale = max((max_pos - min_neg) / float32(qmax - qmin), eps)
                     zero_point = clamp(qmin - rne(min_neg / scale), qmin, qmax)
          (each operation one float32 rounding, divisions included).
        Values, with inv = float32(1 / scale) and z = float32(zero_point):
          fma_rounding False (torch.quantize_per_channel):
              q = rne(float32(float32(x * inv) + z))
          fma_rounding True (torch.quantize_per_tensor, fbgemm's AVX path):
              q = rne(fma(x, inv, z))            one rounding, in float32
          out[i, j] = clamp(q, qmin, qmax).
        out has x's shape: int8 when qmin < 0, else uint8; -128 <= qmin < qmax <= 255
        fit its dtype. Returns (scale float32 (r,), zero_point int32 (r,)).
        """
    def dequantize_rows(
        self,
        q: NDArray[np.int8] | NDArray[np.uint8],
        scale: NDArray[np.float32],
        zero_point: NDArray[np.int32],
        out: NDArray[np.float32],
        n_threads: int,
    ) -> None:
        """out[i, j] = float32(q[i, j] - zero_point[i]) * scale[i]: the difference is
        an exact integer, the product one float32 rounding. q and out are 2-D (r, c),
        scale and zero_point (r,)."""
    def magnitude_threshold(
        self, x: NDArray[np.float32] | NDArray[np.float64], k: int, n_threads: int
    ) -> tuple[float, int]:
        """(threshold, ties) of pruning the k smallest magnitudes of a 1-D x,
        1 <= k <= n: threshold = sorted(|x|)[k - 1], exact, as a Python float;
        ties = k - count(|x| < threshold) >= 1, how many of the elements with
        |x| == threshold are among the k pruned. (A radix select on the bits of |x|:
        two reads of x, not a sort.)"""
    def prune_mask(
        self,
        x: NDArray[np.float32] | NDArray[np.float64],
        threshold: float,
        ties: int,
        n_threads: int,
    ) -> tuple[NDArray[np.uint8], NDArray[np.float32] | NDArray[np.float64], int]:
        """(mask, values, ties_left): magnitude pruning of a 1-D x at a threshold.

        |x[i]| is compared with threshold in float64 (exact for float32 x too).
        x[i] is pruned when |x[i]| < threshold, or when |x[i]| == threshold and it is
        one of the first `ties` such elements in index order (ties >= 0); otherwise
        it is kept.
        mask: uint8 ((n + 7) // 8,), bit i % 8 (least significant first) of byte
          i // 8 set when x[i] is kept, padding bits 0; np.packbits(kept,
          bitorder="little").
        values: x's dtype, the kept elements in index order (signs kept).
        ties_left = max(0, ties - count(|x| == threshold)): passed on as `ties` to the
          next array, one threshold serves several arrays (global pruning).
        """
    def unpack_mask(
        self,
        mask: NDArray[np.uint8],
        values: NDArray[np.float32] | NDArray[np.float64],
        out: NDArray[np.float32] | NDArray[np.float64],
        n_threads: int,
    ) -> None:
        """The inverse of prune_mask: out (1-D, values' dtype, n elements with
        (n + 7) // 8 == len(mask)) gets the values in index order where mask bits
        are set and +0.0 elsewhere. len(values) equals the number of set bits among
        the first n."""

compress: _Compress
