"""Linear models trained by gradkit's kernels, as drop-ins for scikit-learn's.

SGDClassifier and SGDRegressor run scikit-learn's SGD algorithm (every parameter,
default and attribute is scikit-learn's) in gradkit's C++ or numba epoch kernel,
and add optimizer="adam", batch_size and multi_class="multinomial".
LogisticRegression, LinearRegression and Ridge add the full-batch solvers "gd"
(accelerated gradient descent, the default), "adam" and "sgd". CustomLoss trains
SGD on a loss written in Python, compiled by numba.
"""

from gradkit.linear_model._losses import CustomLoss
from gradkit.linear_model._models import LinearRegression, LogisticRegression, Ridge
from gradkit.linear_model._sgd import SGDClassifier, SGDRegressor

__all__ = [
    "CustomLoss",
    "LinearRegression",
    "LogisticRegression",
    "Ridge",
    "SGDClassifier",
    "SGDRegressor",
]
