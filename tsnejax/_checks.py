"""Host-side validation: every check raises ``ValueError`` naming the parameter and the fix.

Runs before anything is traced, so that bad input never reaches a kernel as NaNs.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import jax
import numpy as np

MIN_POINTS = 4


def float_dtype() -> np.dtype:
    """The float dtype kernels compute in: float64 when ``jax_enable_x64`` is on, else float32."""
    return np.dtype(np.float64 if jax.config.jax_enable_x64 else np.float32)


def check_option(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Raise unless ``value`` is one of ``allowed`` (exact spelling, no aliases)."""
    allowed = tuple(allowed)
    if not isinstance(value, str | int | float | type(None)) or value not in allowed:
        choices = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{name}={value!r} is not a valid option; choose one of {choices}.")
    return value


def check_positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """Raise unless ``value`` is a finite real number > 0 (or >= 0)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be a real number, got {value!r} ({type(value).__name__}).")
    value = float(value)
    ok = value >= 0 if allow_zero else value > 0
    if not np.isfinite(value) or not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value!r}.")
    return value


def check_dof(name: str, value: Any) -> float:
    """Raise unless ``value`` is a kernel dof: finite and > 0, or ``inf`` (the Gaussian)."""
    if isinstance(value, int | float | np.integer | np.floating) and value == np.inf:
        return float(value)
    return check_positive(name, value)


def check_scalar(name: str, value: Any, check: Any, *, schedule: bool = False) -> Any:
    """A Python number is checked by ``check(name, value)``; a numeric array passes as it is (a
    traced value under ``jit``/``vmap`` has no value to check), and with ``schedule`` a
    callable too. Anything else (a string, ``None``, a list) is a ``ValueError`` naming ``name``
    (it was Python's ``TypeError`` from deep inside, or ran)."""
    if schedule and callable(value):
        return value
    if isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool):
        return check(name, value)
    if hasattr(value, "dtype") and np.dtype(value.dtype).kind in "iuf":
        return value
    what = "a number, an Optax schedule or a numeric array" if schedule else "a number"
    raise ValueError(f"{name} must be {what}; got {type(value).__name__} {value!r:.40}.")


def check_pathlike(name: str, value: Any, example: str, what: str = "a path") -> Any:
    """Raise unless ``value`` is a ``str`` or ``os.PathLike`` (``None`` or a number was
    ``os.fspath``'s ``TypeError`` from somewhere inside); ``what`` names the kind of path."""
    if not isinstance(value, str | os.PathLike):
        raise ValueError(f"{name} must be {what} such as {example!r}, got {value!r:.60}.")
    return value


def numeric_array(name: str, value: Any) -> Any:
    """``value`` as a host array (a device array as it is) once its dtype is numeric; a dict,
    text or an object was ``float()``'s ``TypeError`` from inside NumPy or JAX."""
    a = value if isinstance(value, jax.Array) else np.asarray(value)
    if np.dtype(a.dtype).kind not in "biuf":
        raise ValueError(
            f"{name} must be a numeric array, got {type(value).__name__} {value!r:.40}."
        )
    return a


def check_momentum(name: str, value: Any) -> float:
    """Raise unless ``value`` is a momentum coefficient in ``[0, 1)``: at 1 or above the velocity
    is never damped and the run explodes (``final_momentum=1.5`` ended at 4.8e3 on 300 points)."""
    value = check_positive(name, value, allow_zero=True)
    if value >= 1:
        raise ValueError(
            f"{name}={value!r}: a momentum must be in [0, 1) (at 1 or above the velocity is never "
            "damped and the embedding runs away); peers use 0.5-0.8."
        )
    return value


def check_perplexity_value(name: str, value: Any) -> float:
    """Raise unless ``value`` is a finite perplexity >= 1: a perplexity is ``exp`` of the entropy
    of a point's neighbour distribution, so 1 (all weight on the nearest neighbour) is the least
    any calibration can reach."""
    value = check_positive(name, value)
    if value < 1:
        raise ValueError(
            f"{name}={value:g} is below 1: a perplexity is exp(entropy) of each point's "
            "neighbour distribution, at least 1 (all weight on the nearest neighbour), so no "
            f"calibration reaches it; use {name} >= 1 (peers default to 30)."
        )
    return value


def check_key(key: Any, name: str = "key") -> Any:
    """Raise unless ``key`` is a JAX PRNG key: typed (``jax.random.key``) or a raw ``uint32[2]``
    (``jax.random.PRNGKey``). An int used to fail deep in JAX with "invalid PRNG key data"."""
    dtype = getattr(key, "dtype", None)
    typed = dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)
    raw = dtype == np.uint32 and np.shape(key)[-1:] == (2,)
    if not (typed or raw):
        raise ValueError(
            f"{name} must be a JAX random key such as jax.random.key(0), got "
            f"{type(key).__name__} {key!r:.40}; the estimator TSNE takes an int or a key as "
            "random_state."
        )
    batch = np.shape(key)[:-1] if raw else np.shape(key)
    if batch:
        # A split batch used to pass this check and fail inside jax.random.split, after the
        # kNN search and P had been computed.
        raise ValueError(
            f"{name} must be one key, got a batch of shape {batch}; tsnejax.fit runs one trial, "
            "tsnejax.fit_batch(keys, X) takes one key per trial."
        )
    return key


def check_int(name: str, value: Any, *, minimum: int = 0) -> int:
    """Raise unless ``value`` is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer, got {value!r} ({type(value).__name__}).")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    return int(value)


def _first(idx: np.ndarray, n: int = 5) -> str:
    head = ", ".join(str(int(i)) for i in idx[:n])
    return head + (", ..." if len(idx) > n else "")


class NonNumericError(TypeError, ValueError):
    """Data that is not numbers: a ``TypeError`` (what ``float()`` raises, and what
    scikit-learn's conventions expect) that is also the ``ValueError`` every other data check
    raises."""


def check_finite_rows(arr: np.ndarray, name: str, fix: str) -> np.ndarray:
    """Raise naming the count and first indices of the rows of 2-D ``arr`` with NaN or inf."""
    bad = ~np.isfinite(arr).all(axis=1) if arr.dtype.kind in "fc" else np.zeros(0, bool)
    if bad.any():
        rows = np.flatnonzero(bad)
        cols = np.flatnonzero(~np.isfinite(arr[rows]).all(axis=0))
        if len(rows) > len(arr) // 2 and len(cols) <= 3 and arr.shape[1] > len(cols):
            # most rows lost to a few columns: dropping rows is the wrong advice
            fix = f"all in column(s) {cols.tolist()}: drop or impute those columns, or {fix}"
        raise_bad_rows(rows, name, fix)
    return arr


def raise_bad_rows(rows: np.ndarray, name: str, fix: str) -> None:
    """The ValueError for the (sorted) indices ``rows`` of ``name`` that hold NaN or inf."""
    raise ValueError(
        f"{name} has {len(rows)} row(s) with NaN or inf values (first: {_first(rows)}); {fix}."
    )


def _as_array(X: Any, name: str) -> np.ndarray:
    """``X`` as an array, missing values as NaN (named by row later): pandas' NA was "non-numeric
    dtype object", a masked array's masked entries were embedded as the values under the mask."""
    if isinstance(X, np.ma.MaskedArray):
        rows = np.flatnonzero(np.ma.getmaskarray(X).reshape(len(X), -1).any(axis=1))
        if len(rows):
            raise ValueError(
                f"{name} is a masked array with masked entries in {len(rows)} row(s) (first: "
                f"{_first(rows)}); fill them ({name}.filled(value)) or drop those rows, as "
                "for missing values."
            )
        return np.asarray(X.data)
    if hasattr(X, "dtypes") and callable(getattr(X, "to_numpy", None)):  # a DataFrame
        dtypes = X.dtypes.items() if hasattr(X.dtypes, "items") else [(name, X.dtypes)]
        times = [str(c) for c, t in dtypes if getattr(t, "kind", "") in ("m", "M")]
        if times:
            raise_times(name, f"column(s) {times}")
        try:
            return X.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):  # text or categorical columns: named below
            pass
    return np.asarray(X)


def raise_times(name: str, where: str) -> None:
    raise ValueError(
        f"{name} {where} hold dates or durations, which would be embedded as nanoseconds (dates: "
        "since 1970, about 1e18) and outweigh every other feature. Convert them to a number on "
        "the scale you mean (e.g. days since the first: (t - t.min()).dt.days) or drop them."
    )


def check_data(X: Any, name: str = "X", *, min_rows: int | None = None) -> np.ndarray:
    """Validate a data matrix and return it as a C-contiguous float array.

    Integer and boolean inputs are converted; object, string and complex arrays are refused.
    Rows with NaN or inf are reported by count and first indices.
    """
    if hasattr(X, "obsm") and hasattr(X, "obs_names"):  # AnnData, without importing anndata
        reps = ", ".join(repr(k) for k in list(getattr(X, "obsm", {}).keys())[:5]) or "none"
        raise ValueError(
            f"{name} is an AnnData object: call tsnejax.tl.tsne(adata, use_rep='X_pca'), "
            "which writes adata.obsm['X_tsne'], or pass one of its matrices as an array: "
            f"adata.obsm['X_pca'] (the usual input; obsm keys here: {reps}) or adata.X "
            "(dense, or reduced first)."
        )
    if hasattr(X, "toarray") and callable(X.toarray):
        raise ValueError(
            f"{name} is a sparse matrix; pass a dense array (X.toarray()) or reduce it first "
            "(e.g. TruncatedSVD to 50 components)."
        )
    arr = _as_array(X, name)
    if arr.dtype == object:  # numbers held as objects (e.g. a mixed DataFrame) are fine
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as err:
            raise NonNumericError(
                f"{name} has non-numeric dtype object ({err}); convert it to a numeric "
                "array (e.g. np.asarray(X, dtype=np.float32))."
            ) from err
    if arr.dtype.kind in "mM":
        raise_times(name, f"(dtype {arr.dtype})")
    if arr.dtype.kind in "OUSV":
        raise ValueError(
            f"{name} has non-numeric dtype {arr.dtype}; convert it to a numeric array "
            "(e.g. np.asarray(X, dtype=np.float32))."
        )
    if arr.dtype.kind == "c":
        raise ValueError(
            f"{name} has complex dtype {arr.dtype} (Complex data not supported); pass "
            "real-valued features."
        )
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (n_samples, n_features), got shape {arr.shape}. Reshape your "
            "data: X.reshape(len(X), -1) for images, X[:, None] for a single feature, or "
            "X[None, :] for a single sample."
        )
    n, d = arr.shape
    least = MIN_POINTS if min_rows is None else min_rows
    if n == 0 or d == 0:
        what, need = ("sample", least) if n == 0 else ("feature", 1)
        raise ValueError(
            f"{name} is empty: 0 {what}(s) (shape={arr.shape}) while a minimum of {need} is "
            "required."
        )
    if n < least:
        raise ValueError(f"{name} has {n} sample(s) (rows); t-SNE needs at least {least} points.")
    dtype = float_dtype()
    if arr.dtype.kind == "f":
        check_finite_rows(arr, name, "drop or impute them before embedding")
    if arr.dtype.itemsize > dtype.itemsize and arr.dtype.kind in "fiu":
        warn_offset(arr, name, dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.ascontiguousarray(arr, dtype=dtype)
    overflow = ~np.isfinite(out).all(axis=1)
    if overflow.any():
        rows = np.flatnonzero(overflow)
        raise ValueError(
            f"{name} has {len(rows)} row(s) with values beyond the {dtype} range (first: "
            f"{_first(rows)}); rescale X (e.g. divide by its largest magnitude) or enable "
            "float64 with jax.config.update('jax_enable_x64', True)."
        )
    return out


#: Offset over spread of a column beyond which float32 loses its distances' 4th digit.
OFFSET_RATIO = 1e4


def warn_offset(arr: np.ndarray, name: str, dtype: np.dtype) -> None:
    """Warn when casting ``arr`` to ``dtype`` loses its distances: rows that sit far from 0
    compared with their spread (1e6 + N(0, 1) kept 1 in 16 of its neighbours' 15th distances to
    1e-3 in float32; the exact kNN recall fell to 0.97). Measured over all columns together, as
    distances are: a near-constant column (1 +- 1e-12) loses only what no distance sees."""
    hi, lo = arr.max(axis=0).astype(np.float64), arr.min(axis=0).astype(np.float64)
    top, spread = np.maximum(np.abs(hi), np.abs(lo)), hi - lo  # two passes over the data
    scale = float(top.max(initial=0.0))  # squares of 1e300-scale values overflow unscaled
    if not 0 < scale < np.inf:
        return
    total = float(np.sqrt(np.sum((spread / scale) ** 2)))
    ratio = float(np.sqrt(np.sum((top / scale) ** 2))) / total if total > 0 else 0.0
    if ratio > OFFSET_RATIO:
        j = int(np.argmax(top))
        warnings.warn(
            f"{name} lies {ratio:.3g}x its spread from 0 (furthest: column {j}), beyond what "
            f"{dtype} resolves (about 7 digits): its distances lose precision when cast. Centre "
            f"it first ({name} - {name}.mean(axis=0)), or enable float64 with "
            "jax.config.update('jax_enable_x64', True).",
            stacklevel=outside_stacklevel(),
        )


def outside_stacklevel() -> int:
    """``stacklevel`` that points a warning raised by the caller at the first frame outside
    tsnejax (the user's line), however deep in the package it is raised."""
    inside = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(inside):
        frame, level = frame.f_back, level + 1
    return level


def check_perplexity(
    perplexity: float | Sequence[float], n: int, k: int | None = None
) -> tuple[float, ...]:
    """Return perplexities as a tuple; each at least 1 and at most the neighbours a point's
    affinities can spread over: ``k`` of a kNN graph when given, and never more than ``n - 1``.

    openTSNE's bound (``perplexity <= k``, with ``k = min(n - 1, 3 * perplexity)`` by default;
    scikit-learn's is ``perplexity < n``): 30 on 60 points runs there, on 59 neighbours.
    """
    values = (perplexity,) if np.ndim(perplexity) == 0 else tuple(perplexity)
    if len(values) == 0:
        raise ValueError("perplexity is an empty list; give at least one value (e.g. 30).")
    out = tuple(check_perplexity_value("perplexity", p) for p in values)
    largest = n - 1 if k is None else min(k, n - 1)
    for p in out:
        if p <= largest:
            continue
        if largest < n - 1:
            raise ValueError(
                f"perplexity={p:g} needs more neighbours than the kNN graph has (k={k}): a "
                f"point's affinities spread over its k neighbours; raise n_neighbors to at "
                f"least {math.ceil(p)} (3*perplexity is the usual choice) or lower perplexity "
                f"to <= {k}."
            )
        raise ValueError(
            f"perplexity={p:g} is too large for {n} points: a point's affinities spread over "
            f"at most n_samples - 1 = {n - 1} neighbours, so the largest allowed is {n - 1} "
            f"(at most {(n - 1) / 3:.4g} keeps the usual 3*perplexity neighbours)."
        )
    return out


def check_labels(labels: Any, n: int, name: str = "labels") -> np.ndarray:
    """Labels must be 1-D with one entry per point, and not NaN (``np.unique`` made each NaN a
    class of its own)."""
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) to match the data, got {arr.shape}.")
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        rows = np.flatnonzero(np.isnan(arr))
        raise ValueError(
            f"{name} has {len(rows)} NaN entries (first: {_first(rows)}); drop those points or "
            "give them a class of their own (e.g. -1)."
        )
    if arr.dtype == object:  # a pandas column: None / NaN / pd.NA, or mixed types, failed
        # inside np.unique's sort with "'<' not supported between ..."
        rows = np.flatnonzero([is_missing_label(v) for v in arr])
        if len(rows):
            raise ValueError(
                f"{name} has {len(rows)} missing entries (None, NaN or pd.NA; first: "
                f"{_first(rows)}); drop those points or give them a class of their own."
            )
        try:
            np.unique(arr)
        except TypeError:
            kinds = ", ".join(sorted({type(v).__name__ for v in arr}))
            raise ValueError(
                f"{name} mixes types that do not compare ({kinds}); give every label one type, "
                "e.g. labels.astype(str)."
            ) from None
    return arr


def is_missing_label(v: Any) -> bool:
    """None, a float NaN or pandas' ``pd.NA``: a label that is not there."""
    return v is None or (isinstance(v, float) and math.isnan(v)) or type(v).__name__ == "NAType"


def check_points(Y: Any, P: Any = None, axis_name: str | None = None) -> None:
    """A gradient kernel's ``Y`` (traced or not): ``(n, d)``, and one row per point of ``P``
    unless rows are split across ``axis_name``. A 1-D ``Y`` failed with "not enough values to
    unpack", a mismatched P with a broadcasting error."""
    shape = np.shape(Y)
    if len(shape) != 2:
        raise ValueError(f"Y must be 2-D (n_points, n_components), got shape {shape}.")
    rows = getattr(P, "neighbors", None)
    if axis_name is None and rows is not None and np.shape(rows)[0] != shape[0]:
        raise ValueError(f"Y has {shape[0]} rows but P describes {np.shape(rows)[0]} points.")


def check_embedding(Y: Any, n: int, n_components: int, name: str = "initialization") -> np.ndarray:
    """A user-supplied embedding must be finite with shape (n, n_components)."""
    arr = np.asarray(Y)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be a numeric array, got dtype {arr.dtype}.")
    if arr.shape != (n, n_components):
        raise ValueError(f"{name} must have shape ({n}, {n_components}), got {arr.shape}.")
    arr = np.ascontiguousarray(arr, dtype=float_dtype())
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf; pass a finite initial embedding.")
    return arr


#: The grid gradients (interpolation, splat, adaptive) and the transform's frozen field run in
#: up to this many dimensions (their cost grows as boxes ** d); above it, the exact gradient.
GRID_MAX_COMPONENTS = 3


def check_n_components(n_components: Any) -> int:
    """A positive int (above :data:`GRID_MAX_COMPONENTS` only the exact gradient runs)."""
    ok = isinstance(n_components, int | np.integer) and not isinstance(n_components, bool)
    if not ok or n_components < 1:
        raise ValueError(
            f"n_components={n_components!r} must be a positive integer (1, 2 or 3 with every "
            "gradient method; more with negative_gradient_method='exact')."
        )
    return int(n_components)


def check_grid_components(method: Any, n_components: int, name: str) -> None:
    """Raise unless gradient ``method`` (a name) runs in ``n_components`` dimensions."""
    if n_components > GRID_MAX_COMPONENTS and method not in ("auto", "exact"):
        raise ValueError(
            f"n_components={n_components} needs the exact gradient: {name}={method!r} runs in "
            f"1-{GRID_MAX_COMPONENTS} dimensions (its grid grows as boxes ** n_components). Use "
            f"{name}='exact' (or 'auto', which picks it), O(N^2) per step."
        )


def check_hashable(name: str, value: Any, form: str) -> Any:
    """Raise unless ``value`` is hashable (a static argument of a compiled program)."""
    try:
        hash(value)
    except TypeError:
        raise ValueError(
            f"{name} must be hashable ({form}; a static argument), got {type(value).__name__}."
        ) from None
    return value


def resolve_seed(random_state: Any) -> Any:
    """An int seed or a JAX key from scikit-learn's ``random_state`` forms: ``None`` draws a
    fresh seed, a ``RandomState`` or ``Generator`` draws one from itself (advancing it, as
    scikit-learn estimators do), an int is used as is, and a ``jax.random.key`` (or a raw
    ``jax.random.PRNGKey``) is the key itself."""
    if random_state is None:
        return int(np.random.SeedSequence().entropy % (2**31))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(2**31 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**31 - 1))
    if is_key(random_state):
        return check_key(random_state, "random_state")
    if not isinstance(random_state, int | np.integer):
        raise ValueError(
            "random_state must be an int seed, a jax.random.key, a numpy RandomState or "
            f"Generator, or None, got {type(random_state).__name__}; tsnejax draws from "
            "jax.random.key(random_state)."
        )
    return int(random_state)


def is_key(x: Any) -> bool:
    """Whether ``x`` is meant as a JAX key (typed, or a raw ``uint32`` array)."""
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        return False
    # A uint32 array is a raw key; a numpy uint32 scalar is a seed.
    return bool(
        jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key) or (dtype == np.uint32 and np.ndim(x))
    )


def key_of(seed: Any) -> Any:
    """``jax.random.key(seed)`` for an int seed; a key as it is (see :func:`resolve_seed`)."""
    return jax.random.key(seed) if isinstance(seed, int | np.integer) else seed
