"""Data loading from local files only (nothing is downloaded at run time).

``load_dataset("digits")`` uses the copy bundled with scikit-learn; ``load_array`` reads
``.npy``, ``.npz`` (arrays ``X`` and optional ``y``) and text files (``.csv``, ``.tsv``,
``.txt``: comma, semicolon, tab or whitespace separated); ``shared_data_dir``
resolves the project's real-data folder from ``TSNEJAX_DATA`` (default ``../shared/data``).
"""

from __future__ import annotations

import csv
import itertools
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from tsnejax._checks import outside_stacklevel

__all__ = [
    "load_dataset",
    "load_array",
    "LABEL_COLUMNS",
    "load_labels",
    "load_mnist",
    "experiment_data",
    "shared_data_dir",
    "DATASETS",
]

DATASETS = ("digits",)


def load_dataset(name: str) -> tuple[np.ndarray, np.ndarray]:
    """A bundled dataset as ``(X, y)``; only ``"digits"`` (1797 x 64, 10 classes) for now."""
    if name != "digits":
        raise ValueError(
            f"dataset={name!r} is not bundled; choose one of {DATASETS} or pass --input FILE."
        )
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X.astype(np.float32), y.astype(np.int32)


def load_array(
    path: str | os.PathLike, *, labels: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read features (and labels if present) from ``.npy``, ``.npz`` or ``.csv``.

    ``.npz``: array ``X`` (or the only array) and optional ``y``, or a sparse matrix written
    by ``scipy.sparse.save_npz``. ``.csv``/``.tsv``/``.txt``: numeric text, the separator
    (tab, ``;``, ``,`` or whitespace, :func:`_separator`) told from the first line; a
    non-numeric first row is a header, and a column it names in
    :data:`LABEL_COLUMNS` holds the labels (read as text), not a feature — except ``y`` beside
    an ``x`` column (coordinates), and nothing with ``labels=False`` (an embedding's file: its
    ``x,y`` header lost ``y`` to the labels, and the metrics scored a 1-D projection).
    """
    p = Path(path)
    if not p.exists():
        raise ValueError(f"input file {str(p)!r} does not exist.")
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(p, allow_pickle=False), None
        if suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                names = list(z.files)
                if {"data", "indices", "indptr", "format", "shape"} <= set(names):
                    import scipy.sparse as sp  # scipy.sparse.save_npz's layout

                    return sp.load_npz(p), None
                if "X" in names:
                    X = z["X"]
                elif len(names) == 1:
                    X = z[names[0]]
                else:
                    raise ValueError(
                        f"input file {str(p)!r} holds arrays {names}; name the features 'X'."
                    )
                y = z["y"] if "y" in names else None
            return X, y
        if suffix in (".csv", ".tsv", ".txt"):
            return _load_csv(p, labels)
    except ValueError as err:
        if str(p) in str(err):
            raise
        if "allow_pickle" in str(err):  # numpy's advice to unpickle untrusted data: not ours
            raise ValueError(
                f"input file {str(p)!r} holds an object array (pickled Python objects), which "
                "is not read; save numbers and text as such, e.g. np.savez(path, X=X, "
                "y=np.asarray(y, dtype=str))."
            ) from err
        # numpy's own ValueErrors (a corrupt .npy, ragged CSV) lack the path.
        raise ValueError(f"input file {str(p)!r} could not be read ({err}).") from err
    except Exception as err:  # corrupt archives raise zipfile/OSError/EOFError
        raise ValueError(f"input file {str(p)!r} could not be read ({err}).") from err
    raise ValueError(
        f"input file {str(p)!r}: unsupported extension; use .npy, .npz, .csv, .tsv or .txt."
    )


#: Header names (any case) of a CSV column read as labels rather than as a feature: a label
#: column embedded as a coordinate would pull each class together, a silent wrong answer.
LABEL_COLUMNS = ("label", "labels", "y", "target", "class", "cluster", "cell_type")


#: Field separators told apart by the first line (``" "``: runs of spaces, np.savetxt's
#: default). A ``.txt`` written by ``np.savetxt(path, X)`` and a tab-separated file were read as
#: one text column and refused as "not numeric".
SEPARATORS = {",": "comma", ";": "semicolon", "\t": "tab", " ": "whitespace"}


def _separator(p: Path) -> str:
    """The first line's separator: a tab, ``;`` or ``,`` (the most frequent of them), else
    whitespace when the first two lines both split into several fields (a one-column file
    headed ``cell size`` is one column), else ``,`` (a single column)."""
    if p.suffix.lower() == ".tsv":
        return "\t"
    with open(p, newline="", encoding="utf-8-sig") as fh:
        lines = list(itertools.islice((r for r in fh if r.strip()), 2)) or [""]
    counts = {sep: lines[0].count(sep) for sep in ("\t", ";", ",")}
    best = max(counts, key=counts.get)
    if counts[best]:
        return best
    return " " if all(len(line.split()) > 1 for line in lines) else ","


def _rows(fh: Any, sep: str) -> Any:
    return (line.split() for line in fh) if sep == " " else csv.reader(fh, delimiter=sep)


def _load_csv(p: Path, labels: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    sep = _separator(p)
    with open(p, newline="", encoding="utf-8-sig") as fh:
        first = next((r for r in _rows(fh, sep) if any(v.strip() for v in r)), [])
    names = [v.strip().strip("'") for v in first]
    header = not all(_is_number(v) for v in names if v.strip())
    label_at = _label_columns(names) if labels and header else []
    if len(label_at) > 1:
        raise ValueError(
            f"input file {str(p)!r} has several label columns "
            f"{[names[i] for i in label_at]}; keep one (or pass --labels)."
        )
    row_names = _row_names_column(p, names) if header else []
    skip = label_at + row_names
    features = [i for i in range(len(names)) if i not in skip]
    try:  # numpy's C parser: the fast path for plain numbers
        if skip and not _same_field_counts(p, len(names), sep):
            raise ValueError("ragged")  # usecols would drop a row's extra fields silently
        delimiter = None if sep == " " else sep
        X = np.loadtxt(
            p,
            delimiter=delimiter,
            skiprows=int(header),
            ndmin=2,
            usecols=features if skip else None,
        )
        y = None
        if label_at:
            y = np.loadtxt(
                p, delimiter=delimiter, skiprows=1, ndmin=1, usecols=label_at[0], dtype=str
            )
            y = np.char.strip(np.char.strip(y), '"')
        return X, y
    except ValueError:
        pass
    # Quoted fields, empty cells: Python's csv module, slower but exact about both.
    with open(p, newline="", encoding="utf-8-sig") as fh:
        rows = [r for r in _rows(fh, sep) if any(v.strip() for v in r)][int(header) :]
    ragged = [i for i, r in enumerate(rows) if len(r) != len(names)]
    if ragged:
        line = ragged[0] + 1 + int(header)
        raise ValueError(
            f"input file {str(p)!r}: line {line} has {len(rows[ragged[0]])} fields, the first "
            f"has {len(names)}."
        )
    cells = np.array(rows, dtype=str).reshape(len(rows), len(names))
    X = np.empty((len(rows), len(features)))
    bad = {}
    for j, c in enumerate(features):
        column = np.char.strip(cells[:, c])
        empty = np.isin(column, MISSING)  # NaN, which the data check then names by row
        try:
            X[:, j] = np.where(empty, "nan", column).astype(float)
        except ValueError:
            odd = str(next(v for v in column[~empty] if not _is_number(v)))
            bad[names[c] if header else f"column {c + 1}"] = odd
    if bad:
        odd = next(iter(bad.values()))
        decimal = " (decimal commas are not read: write 1.5, not 1,5)" if "," in odd else ""
        raise ValueError(
            f"input file {str(p)!r}, read as {SEPARATORS[sep]}-separated: {len(bad)} "
            f"column(s) {_first(list(bad))} are not numeric (e.g. {odd!r}){decimal}; drop them, "
            f"or name a label column one of {LABEL_COLUMNS}. Empty cells and {MISSING[1:]} are "
            "read as missing (NaN)."
        )
    y = np.char.strip(cells[:, label_at[0]]) if label_at else None
    return X, y


#: Cells read as a missing value (NaN), as pandas' and R's CSV readers read them.
MISSING = ("", "NA", "N/A", "n/a", "#N/A", "NULL", "null", "None", "<NA>")


def _row_names_column(p: Path, names: list[str]) -> list[int]:
    """``[0]`` when the header leaves only the first column unnamed: row names, as pandas'
    ``to_csv`` writes its index and R's ``write.csv`` its row names (read as a feature, the row
    number outweighed every other column and the embedding came out ordered by row)."""
    if len(names) < 2 or names[0] or not all(names[1:]):
        return []
    warnings.warn(
        f"input file {str(p)!r}: the first column has no name in the header, so it is read as "
        "row names (pandas' to_csv index, R's write.csv row names), not as a feature; name it "
        "to embed it.",
        stacklevel=outside_stacklevel(),
    )
    return [0]


def _first(names: list[str], shown: int = 5) -> str:
    """``names`` for a message: all of them, or the first ``shown`` and how many more."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return f"{names[:shown]}{more}"


def _label_columns(names: list[str]) -> list[int]:
    """Positions of the header ``names`` (any case) in :data:`LABEL_COLUMNS`; ``y`` beside an
    ``x`` names coordinates (an embedding, 2-D points), not a target."""
    lower = [v.strip().lower() for v in names]
    label_names = set(LABEL_COLUMNS) - ({"y"} if "x" in lower else set())
    return [i for i, v in enumerate(lower) if v in label_names]


def _same_field_counts(p: Path, n_fields: int, sep: str = ",") -> bool:
    """Whether every non-empty line of ``p`` has ``n_fields`` ``sep``-separated fields (counted
    on the bytes, vectorised: a quoted separator counts too, and sends the file to the slow
    path, as does whitespace, whose runs count as one)."""
    if sep == " ":
        return False
    data = np.fromfile(p, dtype=np.uint8)
    ends = np.flatnonzero(data == ord("\n"))
    if len(data) and data[-1] != ord("\n"):
        ends = np.append(ends, len(data))
    commas = np.concatenate([[0], np.cumsum(data == ord(sep))])
    starts = np.concatenate([[0], ends[:-1] + 1])
    per_line = commas[ends] - commas[starts]
    blank = (ends - starts) <= 1  # an empty line, or "\r" alone
    return bool(np.all(per_line[~blank] == n_fields - 1))


def _is_number(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def load_labels(path: str | os.PathLike) -> np.ndarray:
    """Labels from ``.npy``, ``.npz`` (array ``y`` or the only array), a text file of one label
    per line (a first line naming the column, e.g. ``label``, and not found below, is a header),
    or a ``.csv`` / ``.tsv`` table whose header names its label column (one of
    :data:`LABEL_COLUMNS`; each whole line of such a file was read as one label, so every
    point had a class of its own)."""
    p = Path(path)
    if not p.exists():
        raise ValueError(f"labels file {str(p)!r} does not exist.")
    if p.suffix.lower() == ".npy":
        return np.load(p, allow_pickle=False)
    if p.suffix.lower() == ".npz":
        with np.load(p, allow_pickle=False) as z:
            key = "y" if "y" in z.files else z.files[0]
            return z[key]
    # One label per line, spaces included ("CD4 T cell": np.loadtxt split it into two columns).
    with open(p, newline="", encoding="utf-8-sig") as fh:
        lines = [line.strip() for line in fh]
    while lines and not lines[-1]:
        lines.pop()
    sep = _separator(p) if p.suffix.lower() in (".csv", ".tsv") else " "
    header = next(csv.reader(lines[:1], delimiter=sep), []) if sep != " " else []
    if len(header) > 1:  # a table: its label column, by name
        rows = list(csv.reader(lines, delimiter=sep))
        at = _label_columns(header)
        if len(at) != 1:
            raise ValueError(
                f"labels file {str(p)!r} has columns {header}; name one of them "
                f"{LABEL_COLUMNS} (its values are read as the labels), or give one label per "
                "line (a .txt file, or labels holding the separator in quotes)."
            )
        ragged = [i + 1 for i, r in enumerate(rows) if len(r) != len(header)]
        if ragged:
            raise ValueError(
                f"labels file {str(p)!r}: line {ragged[0]} has another number of fields "
                f"than the header ({len(header)})."
            )
        return np.asarray([r[at[0]].strip() for r in rows[1:]], dtype=str)
    if sep != " ":  # a one-column table: a label holding the separator comes quoted
        lines = [v[1:-1] if len(v) > 1 and v[0] == v[-1] == '"' else v for v in lines]
    if lines and lines[0].strip("'\"").lower() in LABEL_COLUMNS and lines[0] not in lines[1:]:
        lines = lines[1:]  # a header naming the column, not a label (a value "y" recurs)
    return np.asarray(lines, dtype=str)


def shared_data_dir(path: str | os.PathLike | None = None) -> Path:
    """The real-data folder: ``path``, else ``$TSNEJAX_DATA``, else ``../shared/data``."""
    if path is not None:
        return Path(path)
    env = os.environ.get("TSNEJAX_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def load_mnist(
    n: int | None = None, *, data_dir: str | os.PathLike | None = None, pca: int | None = 50
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` MNIST rows of ``mnist.npz`` in the data folder (:func:`shared_data_dir`)
    as float32, reduced to ``pca`` components (scikit-learn's PCA, seed 0; ``None``: pixels),
    and their labels. Raises ``FileNotFoundError`` naming the folder when the file is absent."""
    path = shared_data_dir(data_dir) / "mnist.npz"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: pass data_dir (or --data-dir) or set TSNEJAX_DATA."
        )
    with np.load(path) as z:
        X, y = z["X"][:n].astype(np.float32), z["y"][:n]
    if pca is not None:
        from sklearn.decomposition import PCA

        X = PCA(pca, random_state=0).fit_transform(X).astype(np.float32)
    return X, y


def experiment_data(
    n: int, *, smoke: bool = False, data_dir: str | os.PathLike | None = None
) -> tuple[np.ndarray, str]:
    """What the experiment scripts run on: the first ``n`` MNIST rows (PCA-50) and a name,
    or with ``smoke`` the first 500 digits (no data folder needed)."""
    if smoke:
        X, _ = load_dataset("digits")
        return X[:500], "digits-500"
    return load_mnist(n, data_dir=data_dir)[0], f"MNIST-{n}"
