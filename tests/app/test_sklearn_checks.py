"""scikit-learn's own estimator checks on MultiTaskEstimator.

They run on a one-task estimator (``tasks=None``: a task per column of ``y``, its kind
inferred), the form in which scikit-learn's checks pass data (an array ``X``, a 1-D ``y``),
with the default seed ensemble their small data gets (five models).
Every check runs; those listed in ``CANNOT_APPLY`` are expected to fail, for the reason given.
"""

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from mmoe import MultiTaskEstimator

#: checks that cannot hold for this estimator, and why
CANNOT_APPLY = {
    "check_sample_weight_equivalence_on_dense_data": (
        "training is minibatch gradient descent over shuffled batches: a row of weight 2 and "
        "the same row twice give different batches, steps and hence different weights; "
        "weights are honoured as loss weights (the same as weight_column, tested in "
        "test_estimator_sklearn.py), not as repetitions"),
    "check_array_api_input": (
        "inputs are NumPy arrays or pandas DataFrames (mixed column types); array-API "
        "arrays (CuPy, torch) are not accepted. scikit-learn runs this check only with "
        "SCIPY_ARRAY_API=1 and skips it otherwise"),
}


@pytest.mark.default_ensemble
@parametrize_with_checks([MultiTaskEstimator(epochs=2, batch_size=32, threads=1)],
                         expected_failed_checks=lambda est: CANNOT_APPLY)
def test_sklearn_check(estimator, check):
    check(estimator)
