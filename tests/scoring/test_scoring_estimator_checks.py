"""scikit-learn's estimator checks on the credit models.

Expected failures, all for one deliberate reason: a credit target must be 0 (good) / 1 (bad).
scikit-learn's checks also train on other binary label sets ({1, 2}, {"one", "two"}); we
refuse those rather than guess which label is "bad" (a wrong guess would silently turn the PD
into a probability of good). Every other check runs and must pass.
"""

from __future__ import annotations

from typing import Any

from sklearn.utils.estimator_checks import parametrize_with_checks

from flowbureau.scoring import ChallengerModel, ScorecardModel

LABELS_MUST_BE_0_1 = "credit labels must be 0 (good) / 1 (bad); other label sets are refused"


def expected_failures(_estimator: Any) -> dict[str, str]:
    """The checks that feed labels other than 0/1 (see the module docstring)."""
    return {
        "check_estimators_dtypes": LABELS_MUST_BE_0_1 + " (trains on y in {1, 2})",
        "check_classifier_data_not_an_array": LABELS_MUST_BE_0_1 + " (trains on y in {1, 2})",
        "check_classifiers_classes": LABELS_MUST_BE_0_1 + " (trains on string labels)",
    }


@parametrize_with_checks(
    [ScorecardModel(), ChallengerModel(n_estimators=20)],
    expected_failed_checks=expected_failures,
)
def test_sklearn_contract(estimator: Any, check: Any) -> None:
    check(estimator)
