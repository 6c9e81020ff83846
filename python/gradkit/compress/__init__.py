"""Model compression: quantization, pruning, weight sharing and low rank.

Array functions return compressed forms that keep only what they need
(`.nbytes` is their real size) and rebuild the array with `.to_dense()`:
quantize -> QuantizedArray, prune / global_prune -> PrunedArray, share_weights ->
SharedArray, low_rank -> LowRankArray. compress_model applies a recipe to a
gradkit estimator or a dict of arrays, optionally searching for the smallest
model within a metric drop, and returns a CompressedModel that predicts like the
original; gradkit.save writes it (safetensors, xz-coded when smaller).
"""

from gradkit.compress._arrays import (
    LowRankArray,
    PrunedArray,
    QuantizedArray,
    SharedArray,
    global_prune,
    low_rank,
    prune,
    quantize,
    share_weights,
)
from gradkit.compress._model import (
    DEFAULT_SEARCH,
    CompressedModel,
    CompressionReport,
    Recipe,
    compress_model,
)

__all__ = [
    "DEFAULT_SEARCH",
    "CompressedModel",
    "CompressionReport",
    "LowRankArray",
    "PrunedArray",
    "QuantizedArray",
    "Recipe",
    "SharedArray",
    "compress_model",
    "global_prune",
    "low_rank",
    "prune",
    "quantize",
    "share_weights",
]
