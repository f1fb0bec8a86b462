"""The bad-input catalogue of docs/reliability.md as one parametrised test: each case asserts the
error type and a fragment of the message (the cases that are accepted are tested elsewhere:
integer inputs, huge/tiny magnitudes, constant rows)."""

import jax
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from tsnejax import TSNE, TSNEConfig, fit_batch
from tsnejax.affinity import precomputed_affinities
from tsnejax.checkpoint import load_state
from tsnejax.data import load_array, load_labels
from tsnejax.knn import precomputed_knn
from tsnejax.metrics import knn_accuracy
from tsnejax.optim import classic, make_optimizer, parse_optimizer_spec
from tsnejax.sweep import spec_from_dict


def _X(n=50, d=4):
    return np.random.default_rng(0).normal(size=(n, d))


def _with(X, i, j, v):
    X = X.copy()
    X[i, j] = v
    return X


def _ring(n=10, k=3):
    return (np.arange(1, k + 1)[None, :] + np.arange(n)[:, None]) % n, np.ones((n, k))


def _fit(X, **kw):
    return lambda tmp: TSNE(perplexity=kw.pop("perplexity", 5), **kw).fit(X)


def _file(content: bytes, name: str, loader):
    def call(tmp):
        path = tmp / name
        path.write_bytes(content)
        return loader(path)

    return call


IDX, DIST = _ring()
SYM = sp.random(10, 10, density=0.4, random_state=0)
SYM = SYM + SYM.T
SYM.setdiag(0)
SYM.eliminate_zeros()

CASES = {
    "nan value": (_fit(_with(_X(), 3, 1, np.nan)), "NaN or inf"),
    "inf value": (_fit(_with(_X(), 7, 0, np.inf)), "NaN or inf"),
    "beyond float32": (_fit(_with(_X(), 5, 0, 1e300)), "float32 range"),
    "N < 4": (_fit(_X(3)), "at least 4 points"),
    "empty": (_fit(np.zeros((0, 3))), "empty"),
    "not 2-D": (_fit(np.zeros(10)), "must be 2-D"),
    "object dtype": (_fit(np.array([[object()] * 2] * 10)), "non-numeric dtype"),
    "string dtype": (_fit(np.array([["a", "b"]] * 10)), "non-numeric dtype"),
    "perplexity too large": (_fit(_X(50), perplexity=60), "largest allowed is 49"),
    "negative perplexity": (_fit(_X(), perplexity=-5), "perplexity must be finite and > 0"),
    "negative learning rate": (_fit(_X(), learning_rate=-1.0), "learning_rate must be"),
    "zero dof": (_fit(_X(), dof=0.0), "dof must be finite and > 0"),
    "stopping object without check": (
        _fit(_X(), stopping=object()),
        "stopping must be one of ('fixed', 'optsne', 'sklearn') or a rule set",
    ),
    "min_grad_norm without its rule": (
        lambda t: TSNEConfig.make(min_grad_norm=1e-3),
        "min_grad_norm=0.001 applies with stopping='sklearn'",
    ),
    "fit_batch with a rule and a decaying exaggeration": (
        lambda t: fit_batch(
            [jax.random.key(0), jax.random.key(1)],
            _X(),
            TSNEConfig.make(stopping="optsne", exaggeration_decay="linear"),
        ),
        "exaggeration_decay must be 'step' with stopping='optsne'",
    ),
    "n_components 0": (_fit(_X(), n_components=0), "n_components=0 must be a positive integer"),
    "n_components 4 on a grid": (
        _fit(_X(), n_components=4, negative_gradient_method="interpolation"),
        "n_components=4 needs the exact gradient",
    ),
    "unknown method": (_fit(_X(), negative_gradient_method="bh"), "negative_gradient_method"),
    "unknown preset": (_fit(_X(), preset="cuml"), "preset='cuml'"),
    "unknown optimizer": (_fit(_X(), optimizer="adamw_typo"), "optimizer='adamw_typo'"),
    "unknown optimizer argument": (lambda t: make_optimizer("adam", learning_rate=1, lr=1), "lr"),
    "malformed optimizer spec": (lambda t: parse_optimizer_spec("adam:b1"), "not key=value"),
    "unknown gains rule": (lambda t: classic(1.0, gains_rule="adam"), "gains_rule"),
    "labels wrong length": (lambda t: knn_accuracy(_X(20, 2), np.zeros(5)), "labels"),
    "kNN self-loops": (
        lambda t: precomputed_knn(np.where(np.arange(3) == 0, np.arange(10)[:, None], IDX), DIST),
        "itself as a neighbour",
    ),
    "kNN negative distances": (lambda t: precomputed_knn(IDX, -DIST), "non-negative"),
    "kNN wrong shapes": (lambda t: precomputed_knn(IDX, DIST[:, :2]), "shape (n, k)"),
    "kNN indices out of range": (lambda t: precomputed_knn(IDX + 10, DIST), "must lie in"),
    "P not symmetric": (lambda t: precomputed_affinities(sp.triu(SYM, format="csr")), "symmetric"),
    "P negative": (lambda t: precomputed_affinities(-SYM), "non-negative"),
    "P with diagonal": (lambda t: precomputed_affinities(SYM + sp.eye(10)), "diagonal"),
    # the imaginary part was dropped with only NumPy's ComplexWarning
    "P complex": (lambda t: precomputed_affinities(SYM.astype(np.complex64)), "complex dtype"),
    "P text": (lambda t: precomputed_affinities(np.array([["0", "a"], ["a", "0"]])), "numeric"),
    "input file missing": (lambda t: load_array(t / "missing.npy"), "does not exist"),
    "input file corrupt": (_file(b"not an array", "x.npy", load_array), "x.npy"),
    "labels file missing": (lambda t: load_labels(t / "y.npy"), "does not exist"),
    "exaggeration schedule": (
        lambda t: TSNE(exaggeration=lambda i: 2.0).fit(_X()),
        "a schedule of it goes in exaggeration_decay",
    ),
    "dof schedule": (lambda t: TSNE(dof=lambda i: 0.5).fit(_X()), "Phases table"),
    "CSV text column": (_file(b"a,name\n1,x\n2,y\n", "x.csv", load_array), "['name'] are not"),
    # numpy said to load it "unsafely" with allow_pickle=
    "npz object labels": (
        lambda t: (
            np.savez(t / "o.npz", X=np.ones((5, 2)), y=np.array(["a", None] * 2 + ["a"], object)),
            load_array(t / "o.npz"),
        ),
        "holds an object array (pickled Python objects), which is not read",
    ),
    "CSV two label columns": (_file(b"a,y,label\n1,0,0\n", "x.csv", load_array), "several"),
    "sweep config unknown key": (
        lambda t: spec_from_dict({"name": "s", "data": {"name": "digits"}, "grid": {"lr": [1]}}),
        "unknown key(s) ['lr']",
    ),
    "sweep config empty grid": (
        lambda t: spec_from_dict({"name": "s", "data": {"name": "digits"}, "grid": {"dof": []}}),
        "non-empty list",
    ),
    "checkpoint corrupt": (
        _file(b"zip?", "s.npz", lambda p: load_state(p, classic(1.0))),
        "not a readable",
    ),
    # numpy's advice to load it "unsafely" with allow_pickle was passed on
    "checkpoint garbage": (
        _file(b"garbage", "g.npz", lambda p: load_state(p, classic(1.0))),
        "not a readable tsnejax state (save_state writes one): ValueError.",
    ),
}


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(c, marks=pytest.mark.float32_only("1e300 is within float64's range"))
        if c == "beyond float32"
        else c
        for c in sorted(CASES)
    ],
)
def test_catalogue(case, tmp_path):
    call, fragment = CASES[case]
    with pytest.raises(ValueError) as err:
        call(tmp_path)
    assert fragment in str(err.value), str(err.value)


def test_a_csv_label_column_is_read_as_labels_not_a_feature(tmp_path):
    X = np.random.default_rng(0).normal(size=(6, 3))
    names = np.array(["cat", "dog", "cat", "eel", "dog", "eel"])
    with open(tmp_path / "a.csv", "w") as fh:
        fh.write("f0,Label,f1,f2\n")
        fh.writelines(
            f"{a:.6f},{y},{b:.6f},{c:.6f}\n" for (a, b, c), y in zip(X, names, strict=True)
        )
    got, y = load_array(tmp_path / "a.csv")
    np.testing.assert_allclose(got, X, atol=1e-6)  # three features: the labels are not one
    assert y.tolist() == names.tolist()
    np.savetxt(tmp_path / "b.csv", X, delimiter=",")  # no header: every column a feature
    got, y = load_array(tmp_path / "b.csv")
    assert got.shape == (6, 3) and y is None


def test_text_files_with_other_separators_read_as_their_csv(tmp_path):
    """np.savetxt's default (spaces), tabs and semicolons: each was read as one text column and
    refused as "not numeric"; now the first line tells the separator."""
    X = np.random.default_rng(0).normal(size=(7, 3))
    for name, kw in [("s.txt", {}), ("t.tsv", {"delimiter": "\t"}), ("t.txt", {"delimiter": "\t"}),
                     ("c.csv", {"delimiter": ";"}), ("a.txt", {"delimiter": ","})]:  # fmt: skip
        np.savetxt(tmp_path / name, X, **kw)
        got, y = load_array(tmp_path / name)
        np.testing.assert_array_equal(got, X)  # savetxt's %.18e round-trips float64
        assert y is None, name
    names = ["cat", "dog", "cat", "eel", "dog", "eel", "cat"]
    for sep in ("  ", "\t", ";"):  # a label column, with runs of spaces in the first case
        lines = [sep.join(["f0", "label", "f1", "f2"])]
        lines += [
            sep.join([repr(float(a)), n, repr(float(b)), repr(float(c))])
            for (a, b, c), n in zip(X, names, strict=True)
        ]
        (tmp_path / "l.txt").write_text("\n".join(lines) + "\n")
        got, y = load_array(tmp_path / "l.txt")
        np.testing.assert_array_equal(got, X)
        assert y.tolist() == names, repr(sep)
    (tmp_path / "one.txt").write_text("1.5\n2.5\n")  # one column: no separator at all
    assert load_array(tmp_path / "one.txt")[0].tolist() == [[1.5], [2.5]]
    (tmp_path / "one.txt").write_text("cell size\n1.5\n2.5\n")  # a header with a space
    assert load_array(tmp_path / "one.txt")[0].tolist() == [[1.5], [2.5]]
    (tmp_path / "dec.csv").write_text("a;b\n1,5;2,5\n")
    with pytest.raises(ValueError, match=r"semicolon-separated.*decimal commas are not read"):
        load_array(tmp_path / "dec.csv")


@settings(max_examples=40, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 6), st.integers(1, 5)),
    sep=st.sampled_from([",", ";", "\t", " ", "   "]),
    header=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_any_separator_round_trips_a_matrix(tmp_path_factory, shape, sep, header, seed):
    X = np.random.default_rng(seed).normal(size=shape) * 10.0 ** np.arange(-3, 3)[seed % 6]
    lines = [sep.join(f"f{j}" for j in range(shape[1]))] if header else []
    lines += [sep.join(repr(float(v)) for v in row) for row in X]
    f = tmp_path_factory.mktemp("sep") / "x.txt"
    f.write_text("\n".join(lines) + "\n")
    got, y = load_array(f)
    np.testing.assert_array_equal(got, X)  # repr round-trips float64 exactly
    assert y is None


def test_a_labels_table_gives_its_label_column_and_a_header_is_not_a_label(tmp_path):
    """A labels CSV with an id column was read one whole line per label ("c1,T"), so every
    point was a class of its own and the 10-NN accuracy came out 0 without a word; a header
    line "label" was read as the first label."""
    (tmp_path / "t.csv").write_text("cell_id,cell_type\nc1,T\nc2,B\nc3,T\n")
    assert load_labels(tmp_path / "t.csv").tolist() == ["T", "B", "T"]
    (tmp_path / "t.tsv").write_text("id\tLabel\nc1\tT cell\nc2\tB cell\n")
    assert load_labels(tmp_path / "t.tsv").tolist() == ["T cell", "B cell"]
    (tmp_path / "one.csv").write_text('label\n"T, naive"\nB\n')  # pandas quotes such labels
    assert load_labels(tmp_path / "one.csv").tolist() == ["T, naive", "B"]
    (tmp_path / "one.txt").write_text("Label\nT cell\nB cell\n")
    assert load_labels(tmp_path / "one.txt").tolist() == ["T cell", "B cell"]
    (tmp_path / "yn.txt").write_text("y\nn\ny\n")  # a value, not a header: it recurs
    assert load_labels(tmp_path / "yn.txt").tolist() == ["y", "n", "y"]
    (tmp_path / "ids.csv").write_text("id,name\nc1,T\n")
    with pytest.raises(ValueError, match=r"has columns \['id', 'name'\]; name one of them"):
        load_labels(tmp_path / "ids.csv")


def test_csv_row_names_and_missing_markers(tmp_path):
    """pandas' ``df.to_csv(path)`` writes its index as a first column with an empty header name,
    R's ``write.csv`` its quoted row names: both were embedded as a feature (the row number
    outweighed the rest and the embedding came out ordered by row). R's and pandas' ``NA``
    markers were "column not numeric", which told the user to drop the column."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    X0 = rng.normal(size=(12, 3))
    frame = pd.DataFrame(X0, columns=["a", "b", "c"]).assign(label=list("xyz") * 4)
    frame.to_csv(tmp_path / "pandas.csv")
    r_lines = ['"","a","b","c","label"'] + [
        f'"cell{i}",{",".join(map(repr, row))},"{lab}"'
        for i, (row, lab) in enumerate(zip(X0.tolist(), frame["label"], strict=True))
    ]
    (tmp_path / "r.csv").write_text("\n".join(r_lines) + "\n")
    for name in ("pandas.csv", "r.csv"):
        with pytest.warns(UserWarning, match="first column has no name .* read as row names"):
            X, y = load_array(tmp_path / name)
        np.testing.assert_allclose(X, X0)
        assert y.tolist() == list("xyz") * 4
    # A first column that has a name is a feature; a headerless first cell is data.
    frame.to_csv(tmp_path / "named.csv", index_label="id")
    assert load_array(tmp_path / "named.csv")[0].shape == (12, 4)
    (tmp_path / "na.csv").write_text("a,b\n1,NA\nN/A,2\n3,4\nNULL,5\n")
    X, _ = load_array(tmp_path / "na.csv")
    np.testing.assert_array_equal(np.isnan(X).sum(axis=1), [1, 1, 0, 1])
    wide = ";".join(f"g{i}" for i in range(40)) + "\n" + ";".join(["1,5"] * 40) + "\n"
    (tmp_path / "wide.csv").write_text(wide)  # decimal commas
    with pytest.raises(ValueError, match=r"40 column\(s\) \['g0', .*'g4'\] and 35 more"):
        load_array(tmp_path / "wide.csv")  # not all forty names


def test_csv_quotes_empty_cells_ragged_lines_and_a_bom(tmp_path):
    """What spreadsheets write: a quoted label with a comma, an empty cell, a UTF-8 BOM (Excel);
    an empty cell was "column not numeric", a quoted comma split a field, and with a label
    column a line's extra field was dropped without a word."""
    f = tmp_path / "sheet.csv"
    rows = 'x,1,2\r\n"y, z",3,\r\nx,5,6\r\nw,7,8\r\nw,9,1\r\n'
    f.write_text("\ufeffLabel,a,b\r\n" + rows, encoding="utf-8")
    X, y = load_array(f)
    np.testing.assert_array_equal(X, [[1, 2], [3, np.nan], [5, 6], [7, 8], [9, 1]])
    assert y.tolist() == ["x", "y, z", "x", "w", "w"]
    with pytest.raises(ValueError, match=r"X has 1 row\(s\) with NaN .*\(first: 1\)"):
        TSNE().fit(X)  # the missing value is then named by its row
    for name, text in [("r1.csv", "a,b\n1,2\n3,4,5\n"), ("r2.csv", "a,b,label\n1,2,x\n3,4,5,y\n")]:
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match="line 3 has .* fields, the first has"):
            load_array(tmp_path / name)
    # "x,y" are coordinates, not a feature and its target: both columns are features (an
    # embedding's CSV lost y to the labels and the metrics scored a 1-D projection of it).
    (tmp_path / "xy.csv").write_text("x,y\n1,2\n3,4\n")
    X, y = load_array(tmp_path / "xy.csv")
    assert X.tolist() == [[1, 2], [3, 4]] and y is None
    (tmp_path / "e.csv").write_text("a,label\n1,2\n3,4\n")
    X, y = load_array(tmp_path / "e.csv", labels=False)  # what the metrics verb reads
    assert X.tolist() == [[1, 2], [3, 4]] and y is None
    # A labels file: one per line, spaces kept (np.loadtxt split "T cell" into two columns).
    (tmp_path / "labels.txt").write_text("T cell\nB cell\nT cell\n\n")
    assert load_labels(tmp_path / "labels.txt").tolist() == ["T cell", "B cell", "T cell"]
    (tmp_path / "t.csv").write_text("a,name\n1,x\n2,y\n")
    with pytest.raises(ValueError, match=r"\['name'\] are not numeric \(e.g. 'x'\)"):
        load_array(tmp_path / "t.csv")
