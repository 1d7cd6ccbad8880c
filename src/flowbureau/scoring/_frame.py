"""Input checks shared by the credit models: feature frames, labels, fingerprints.

Rules:
- ``X`` is a pandas DataFrame with unique string column names; a 2-D array is accepted and
  named ``x0, x1, ...`` (what scikit-learn's own tooling passes).
- A column is *categorical* when its dtype is object, string or category; otherwise numerical
  (bool counts as numerical 0/1). Missing values are NaN/None/NA.
- ``y`` holds 0 (good) and 1 (bad) only; both must be present. Anything else is refused, never
  guessed: a label order mistake would silently turn the PD into a probability of *good*.
- Problems raise :class:`~flowbureau.errors.ModelInputError` naming the field and, for a value,
  ``line`` = the 1-based row of the frame.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.base import ClassifierMixin
from sklearn.exceptions import DataConversionWarning

from flowbureau.errors import ModelInputError
from flowbureau.scoring._binning import Kind


class CreditClassifierMixin(ClassifierMixin):  # type: ignore[misc]
    """What every credit model shares: its scikit-learn tags and the input record of ``fit``."""

    def __sklearn_tags__(self) -> Any:
        """Binary classifier on frames with NaN, strings and categories."""
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.categorical = True
        tags.input_tags.string = True
        tags.classifier_tags.multi_class = False
        return tags

    def _fit_input(self, X: object, y: object) -> tuple[pd.DataFrame, npt.NDArray[np.int_]]:
        """``X`` as a frame and ``y`` as 0/1; record ``feature_names_in_`` (frames only),
        ``n_features_in_`` and ``classes_``."""
        frame = as_frame(X)
        target = binary_target(y, len(frame))
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self.n_features_in_ = frame.shape[1]
        self.classes_ = np.array([0, 1])
        return frame, target


def as_frame(X: object) -> pd.DataFrame:
    """``X`` as a DataFrame with string column names (arrays get ``x0, x1, ...``)."""
    if hasattr(X, "tocsr") or type(X).__module__.startswith("scipy.sparse"):
        raise ModelInputError(
            "Sparse data was passed for X, but dense data is required: pass a DataFrame",
            field="X",
        )
    if isinstance(X, pd.DataFrame):
        frame = X
    else:
        try:
            array = np.asarray(X)
        except (TypeError, ValueError) as exc:
            raise ModelInputError(f"X is not array-like: {exc}", field="X") from exc
        if array.ndim != 2:
            raise ModelInputError(
                f"X must be 2-D (a frame of features); got {array.ndim}-D with shape "
                f"{array.shape}. Reshape your data (e.g. array.reshape(-1, 1) for one feature)",
                field="X",
            )
        frame = pd.DataFrame(array, columns=[f"x{i}" for i in range(array.shape[1])])
    if frame.shape[1] == 0:
        raise ModelInputError(
            f"Found array with 0 feature(s) (shape={frame.shape}) while a minimum of 1 is "
            "required.",
            field="X",
        )
    if frame.shape[0] == 0:
        raise ModelInputError(
            f"Found array with 0 sample(s) (shape={frame.shape}) while a minimum of 1 is required.",
            field="X",
        )
    if any(pd.api.types.is_complex_dtype(dtype) for dtype in frame.dtypes):
        raise ModelInputError("Complex data not supported", field="X")
    names = [str(c) for c in frame.columns]
    if len(set(names)) != len(names):
        raise ModelInputError("X has duplicate column names", field="X")
    if list(frame.columns) != names:
        frame = frame.set_axis(names, axis=1)
    return frame


def column_kind(series: pd.Series) -> Kind:
    """``categorical`` for object/string/category dtypes, else ``numerical``."""
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype):
        return "categorical"
    if pd.api.types.is_numeric_dtype(dtype):
        return "numerical"
    return "categorical"


def binary_target(y: object, n_rows: int) -> npt.NDArray[np.int_]:
    """``y`` as an int array of 0/1, with both classes present."""
    if y is None:
        raise ModelInputError(
            "a credit model requires y to be passed, but the target y is None", field="y"
        )
    try:
        array = np.asarray(y)
    except (TypeError, ValueError) as exc:
        raise ModelInputError(f"y is not array-like: {exc}", field="y") from exc
    if array.ndim == 2 and array.shape[1] == 1:
        warnings.warn(
            "A column-vector y was passed when a 1d array was expected; it is read as 1-D",
            DataConversionWarning,
            stacklevel=3,
        )
        array = array.ravel()
    if array.ndim != 1:
        raise ModelInputError(f"y must be 1-D; got shape {array.shape}", field="y")
    if len(array) != n_rows:
        raise ModelInputError(
            f"y has {len(array)} labels but X has {n_rows} rows (inconsistent numbers of samples)",
            field="y",
        )
    if np.iscomplexobj(array):
        raise ModelInputError("Complex data not supported", field="y")
    if array.dtype == bool:
        array = array.astype(np.int_)
    series = pd.Series(array, dtype=object)
    labels = list(pd.unique(series))
    bad = [v for v in labels if not _is_binary_label(v)]
    if bad:
        row = int(np.flatnonzero(series.isin(bad).to_numpy())[0]) + 1
        numeric = all(isinstance(v, int | float | np.integer | np.floating) for v in labels)
        if numeric and any(float(v) != int(v) for v in labels if np.isfinite(v)):
            what = "Unknown label type: continuous"
        elif numeric and len(labels) > 2:
            what = "Only binary classification is supported"
        else:
            what = "Unknown label type for a binary credit target"
        raise ModelInputError(
            f"{what}; labels must be 0 (good) or 1 (bad), found {bad[:5]!r}",
            field="y",
            line=row,
        )
    out = np.asarray(array, dtype=np.float64).astype(np.int_)
    if len(np.unique(out)) < 2:
        raise ModelInputError(
            "y holds only one class; a credit model needs both good (0) and bad (1) cases",
            field="y",
        )
    return out


def group_labels(groups: object, n_rows: int) -> npt.NDArray[Any] | None:
    """``groups`` (one label per row, e.g. the cohort date) as an object array, or ``None``."""
    if groups is None:
        return None
    labels = np.asarray(groups, dtype=object)
    if labels.ndim != 1 or len(labels) != n_rows:
        raise ModelInputError(
            f"groups needs one label per row ({n_rows}), got shape {labels.shape}",
            field="groups",
        )
    return labels


def _is_binary_label(value: object) -> bool:
    if isinstance(value, bool | np.bool_):
        return True
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value) in (0.0, 1.0)
    return False


def select_features(
    X: object, feature_names: Sequence[str], *, fitted_with_names: bool, model: str
) -> pd.DataFrame:
    """The model's feature columns of ``X`` in training order (arrays map by position)."""
    frame = as_frame(X)
    names = list(feature_names)
    if isinstance(X, pd.DataFrame) and fitted_with_names:
        missing = [n for n in names if n not in frame.columns]
        if missing:
            raise ModelInputError(
                f"X lacks the model's feature column(s) {missing}", field=missing[0]
            )
        return frame[names]
    if frame.shape[1] != len(names):
        raise ModelInputError(
            f"X has {frame.shape[1]} features, but {model} is expecting {len(names)} "
            "features as input",
            field="X",
        )
    return frame.set_axis(names, axis=1)


def numeric_column(series: pd.Series) -> npt.NDArray[np.float64]:
    """A feature column as float64 (NaN for missing); non-numeric text is an error."""
    if pd.api.types.is_numeric_dtype(series.dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    coerced = pd.to_numeric(series, errors="coerce")
    bad = coerced.isna().to_numpy() & ~series.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ModelInputError(
            f"numerical feature holds a non-number {series.iloc[row]!r}",
            field=str(series.name),
            line=row + 1,
        )
    return coerced.to_numpy(dtype=np.float64, na_value=np.nan)


def fingerprint(X: pd.DataFrame, y: npt.ArrayLike | None = None) -> str:
    """SHA-256 of a training frame: column names, dtypes, every value (and the labels)."""
    digest = hashlib.sha256()
    for name, dtype in X.dtypes.items():
        digest.update(f"{name}\x1f{dtype}\x1e".encode())
    row_hashes = pd.util.hash_pandas_object(X, index=False).to_numpy(dtype=np.uint64)
    digest.update(row_hashes.tobytes())
    if y is not None:
        digest.update(b"\x1dy")
        digest.update(np.asarray(y, dtype=np.int64).tobytes())
    return digest.hexdigest()
