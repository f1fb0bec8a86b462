"""Figures: every point is drawn whatever its label (NaN, None, a continuous value)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tsnejax.plot import label_codes, plot_embedding, plot_small_multiples  # noqa: E402

Y = np.random.default_rng(0).normal(size=(60, 2))


def _drawn(fig) -> int:
    """Points drawn on the figure's first axes (the scatter collections' offsets)."""
    return sum(len(c.get_offsets()) for c in fig.axes[0].collections)


def test_label_codes():
    names, codes = label_codes(np.array([1.0, np.nan, 2.0, 1.0]), 4)
    assert names == ["1", "2"] and codes.tolist() == [0, -1, 1, 0]  # class numbers as floats
    names, codes = label_codes(np.array(["b", None, "a"], dtype=object), 3)
    assert names == ["a", "b"] and codes.tolist() == [1, -1, 0]  # None sorted with strings
    pd = pytest.importorskip("pandas")  # pd.NA (a nullable string column) was a class "<NA>"
    names, codes = label_codes(pd.array(["b", pd.NA, "a"], dtype="string").to_numpy(object), 3)
    assert names == ["a", "b"] and codes.tolist() == [1, -1, 0]
    names, values = label_codes(np.linspace(0, 1, 30), 30)  # continuous: a colour scale
    assert names is None and values.shape == (30,)
    with pytest.raises(ValueError, match=r"labels must have shape \(5,\)"):
        label_codes(np.zeros(4), 5)


@pytest.mark.parametrize(
    "labels",
    [
        np.r_[np.zeros(30), np.full(30, np.nan)],  # NaN-labelled points vanished
        np.array(["x", None] * 30, dtype=object),  # a TypeError sorting None with str
        np.random.default_rng(1).normal(size=60),  # a continuous value: 60 "classes"
        np.arange(60) % 3,
    ],
    ids=["nan", "none", "continuous", "classes"],
)
def test_every_point_is_drawn(labels):
    fig = plot_embedding(Y, labels)
    assert _drawn(fig) == 60
    plt.close(fig)
    fig = plot_small_multiples([("a", Y), ("b", None)], labels)
    assert _drawn(fig) == 60
    plt.close(fig)


def test_embedding_shapes():
    fig = plot_embedding(Y[:, 0])  # (n,): a 1-D embedding (failed to unpack)
    assert _drawn(fig) == 60
    plt.close(fig)
    wide = np.random.default_rng(2).normal(size=(60, 4))
    fig = plot_embedding(wide, title="run")  # the first two columns, said in the title
    assert fig.axes[0].get_title() == "run: columns 1-2 of 4" and _drawn(fig) == 60
    plt.close(fig)
    with pytest.raises(ValueError, match="labels must have shape"):
        plot_embedding(Y, np.zeros(10))
