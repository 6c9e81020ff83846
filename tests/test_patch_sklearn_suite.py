"""scikit-learn's own tests of the patched functions and estimators, shipped inside
the installed scikit-learn, run with gradkit.patch_sklearn() on (in a subprocess,
so the patch does not leak into this session). Every test passes patched except
the ones below, each for a reason the closing note and README give."""

import re
import subprocess
import sys
from pathlib import Path

MODULES = [
    "sklearn.metrics.tests.test_classification",
    "sklearn.metrics.tests.test_ranking",
    "sklearn.metrics.tests.test_regression",
    "sklearn.metrics.tests.test_common",
    "sklearn.metrics.tests.test_score_objects",
    "sklearn.linear_model.tests.test_sgd",
]

EXPECTED_FAILURES = {
    # gradkit's confusion_matrix refuses integer sample weights whose counts would
    # overflow int64; scikit-learn lets them wrap around, which this test pins.
    "test_confusion_matrix_dtype",
    # scikit-learn refuses a bare metric as `scoring` by checking that its module
    # starts with "sklearn.metrics."; the patched functions live in gradkit._patch
    # (so that they pickle), and the check no longer fires.
    "test_scoring_is_not_metric",
    # These fit SGDClassifier with shuffle=True and no random_state and assert the
    # class of a point 0.02 from the boundary: the outcome depends on scikit-learn's
    # own shuffle stream, which gradkit does not reproduce (it shuffles with numpy's
    # Generator). With shuffle=False both give the same coefficients.
    "test_class_weights[SGDClassifier]",
    "test_class_weights[SparseSGDClassifier]",
    "test_sample_weights[SGDClassifier]",
    "test_sample_weights[SparseSGDClassifier]",
}


def test_sklearn_suite_passes_patched(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # not gradkit's settings
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(tmp_path / "pytest.ini"),
         "--rootdir", str(tmp_path), "-p", "sklearn_patch_plugin",
         "-p", "no:cacheprovider", "-q", "-rf", "--pyargs", *MODULES],
        capture_output=True, text=True, cwd=tmp_path,
        env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).parent)},
    )  # fmt: skip
    summary = done.stdout.strip().splitlines()[-1]
    assert " passed" in summary, done.stdout[-3000:] + done.stderr[-3000:]
    failed = set(re.findall(r"^FAILED \S*::(\S+)", done.stdout, re.MULTILINE))
    unexpected = failed - EXPECTED_FAILURES
    assert not unexpected, f"{unexpected} failed patched:\n{done.stdout[-5000:]}"
    assert "error" not in summary, summary
