"""Matplotlib figures (reads results; computes nothing new)."""

from __future__ import annotations

import os

import numpy as np

from tsnejax._checks import check_pathlike, check_positive, is_missing_label, numeric_array

__all__ = ["plot_embedding", "plot_precision_recall", "plot_small_multiples", "plot_heatmap"]


def plot_embedding(
    Y: np.ndarray,
    labels: np.ndarray | None = None,
    path: str | os.PathLike | None = None,
    *,
    title: str | None = None,
    point_size: float | None = None,
):
    """Scatter a 1-D, 2-D or 3-D embedding coloured by label; save to ``path`` if given.

    Returns the matplotlib ``Figure``.
    """
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if path is not None:
        check_pathlike("path", path, "embedding.png", "a file path")
    if point_size is not None:
        check_positive("point_size", point_size)
    Y = np.asarray(numeric_array("Y", Y), float)  # a dict was float()'s TypeError
    if Y.ndim == 1:  # (n,): a 1-D embedding (it failed to unpack)
        Y = Y[:, None]
    if Y.ndim != 2 or len(Y) == 0:  # no rows was a ZeroDivisionError
        raise ValueError(f"Y must be an (n, d) embedding with n >= 1, got shape {Y.shape}.")
    n, d = Y.shape
    if d > 3:  # the first two columns, said in the title (they were drawn without a word)
        title = f"{title + ': ' if title else ''}columns 1-2 of {d}"
        Y, d = Y[:, :2], 2
    s = point_size if point_size is not None else float(np.clip(20000 / n, 0.5, 20))
    fig = plt.figure(figsize=(7, 6.5))
    ax = fig.add_subplot(projection="3d" if d == 3 else None)
    coords = [Y[:, 0], Y[:, 1] if d > 1 else np.zeros(n)] + ([Y[:, 2]] if d == 3 else [])
    if labels is None:
        ax.scatter(*coords, s=s, c="tab:blue", linewidths=0, alpha=0.8)
    else:
        names, codes = label_codes(labels, n)
        if names is None:  # a continuous value: one colour scale and a colour bar
            cmap = plt.get_cmap("viridis").with_extremes(bad="lightgrey")
            dots = ax.scatter(*coords, s=s, c=codes, cmap=cmap, linewidths=0, alpha=0.8)
            fig.colorbar(dots, ax=ax, shrink=0.8, label="label")
        else:
            cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
            groups = [(str(c), codes == i, cmap(i % cmap.N)) for i, c in enumerate(names)]
            groups.append(("missing", codes == -1, "lightgrey"))  # NaN / None labels
            for name, m, color in groups:
                if m.any():
                    pts = [x[m] for x in coords]
                    ax.scatter(*pts, s=s, color=color, linewidths=0, alpha=0.8, label=name)
            if len(names) <= 20:
                ax.legend(markerscale=max(1.0, 6 / s**0.5), fontsize=8, loc="best", title="label")
    ax.set_xlabel("t-SNE 1")
    ax.set_ylabel("t-SNE 2" if d > 1 else "")
    if d == 3:
        ax.set_zlabel("t-SNE 3")
    if title:
        ax.set_title(title)
    return _finish(fig, path)


def plot_precision_recall(
    curves: dict[str, dict],
    path: str | os.PathLike | None = None,
    *,
    title: str | None = None,
):
    """NN precision (left) and recall (right) vs k, one line per entry of ``curves``.

    ``curves`` maps a name to a dict with ``nn_precision`` and ``nn_recall`` lists (as in
    :func:`tsnejax.metrics.evaluate`). Returns the ``Figure``.
    """
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for name, c in curves.items():
        k = np.arange(1, len(c["nn_precision"]) + 1)
        axes[0].plot(k, c["nn_precision"], marker=".", label=name)
        axes[1].plot(k, c["nn_recall"], marker=".", label=name)
    for ax, what in zip(axes, ("precision", "recall"), strict=True):
        ax.set_xlabel("k (embedding neighbours)")
        ax.set_ylabel(f"NN {what}")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_title("precision = hits / k")
    axes[1].set_title("recall = hits / K (K = input-space neighbours)")
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


def plot_small_multiples(
    panels: list[tuple[str, np.ndarray | None]],
    labels: np.ndarray | None = None,
    path: str | os.PathLike | None = None,
    *,
    ncols: int | None = None,
    title: str | None = None,
):
    """One small 2-D scatter per ``(title, Y)`` panel (``Y=None``: an empty "missing" panel),
    row-major on a grid of ``ncols`` columns, coloured by ``labels``. Returns the ``Figure``."""
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    ncols = ncols or int(np.ceil(np.sqrt(len(panels))))
    nrows = int(np.ceil(len(panels) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.6 * nrows), squeeze=False)
    colours, classes = {"c": "tab:blue"}, None
    if labels is not None:
        n = (
            len(next(Y for _, Y in panels if Y is not None))
            if any(Y is not None for _, Y in panels)
            else len(labels)
        )
        classes, codes = label_codes(labels, n)
        if classes is None:  # continuous
            cmap = plt.get_cmap("viridis").with_extremes(bad="lightgrey")
            colours = {"c": codes, "cmap": cmap}
        else:
            rgba = np.asarray(plt.get_cmap("tab10")(codes % 10))
            rgba[codes == -1] = (0.83, 0.83, 0.83, 1.0)  # missing labels: light grey
            colours = {"c": rgba}
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, (name, Y) in zip(axes.ravel(), panels, strict=False):
        ax.set_title(name, fontsize=7)
        if Y is None:
            ax.text(0.5, 0.5, "missing", ha="center", va="center", transform=ax.transAxes)
            continue
        Y = np.asarray(Y)
        y2 = Y[:, 1] if Y.shape[1] > 1 else np.zeros(len(Y))
        s = float(np.clip(2000 / len(Y), 0.1, 4))
        ax.scatter(Y[:, 0], y2, s=s, linewidths=0, rasterized=True, **colours)
        ax.set_aspect("equal", adjustable="datalim")
    if title:
        import textwrap

        size = min(12, 4 + 2.5 * ncols)
        width = max(20, int(2.6 * ncols * 72 / (0.55 * size)))  # characters that fit
        lines = [textwrap.fill(line, width) for line in title.split("\n")]
        fig.suptitle("\n".join(lines), fontsize=size)
    if classes is not None and len(classes) <= 10:
        cmap = plt.get_cmap("tab10")
        handles = [
            plt.Line2D([], [], marker="o", ls="", color=cmap(i), label=str(c))
            for i, c in enumerate(classes)
        ]
        # Narrow figures: the legend on balanced rows of at most max(5, 3 * ncols) entries.
        legend_rows = int(np.ceil(len(classes) / max(5, 3 * ncols)))
        per_row = int(np.ceil(len(classes) / legend_rows))
        fig.legend(
            handles=handles,
            loc="lower center",
            ncol=per_row,
            fontsize=7,
            title="label",
            title_fontsize=7,
            frameon=False,
        )
        bottom = (0.3 + 0.2 * legend_rows) / (2.6 * nrows)  # inches of legend / figure height
        return _finish(fig, path, rect=(0, bottom, 1, 1))
    return _finish(fig, path)


def plot_heatmap(
    values: np.ndarray,
    row_labels: list,
    col_labels: list,
    path: str | os.PathLike | None = None,
    *,
    row_name: str = "",
    col_name: str = "",
    title: str | None = None,
):
    """Annotated heatmap of a ``(rows, cols)`` metric table (NaN cells left blank)."""
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    values = np.asarray(values, float)
    fig, ax = plt.subplots(
        figsize=(1.2 + 0.9 * len(col_labels), 1.2 + 0.55 * len(row_labels) + 0.5)
    )
    im = ax.imshow(values, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(col_labels)), [str(c) for c in col_labels], rotation=45)
    ax.set_yticks(range(len(row_labels)), [str(r) for r in row_labels])
    ax.set_xlabel(col_name)
    ax.set_ylabel(row_name)
    finite = values[np.isfinite(values)]
    mid = finite.mean() if finite.size else 0.0
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if np.isfinite(values[i, j]):
                color = "black" if values[i, j] > mid else "white"
                ax.text(
                    j, i, f"{values[i, j]:.3g}", ha="center", va="center", fontsize=7, color=color
                )
    fig.colorbar(im, ax=ax)
    if title:
        ax.set_title(title)
    return _finish(fig, path)


def label_codes(labels, n: int) -> tuple[list[str] | None, np.ndarray]:
    """``(names, codes)``: the classes of ``labels`` ``(n,)`` and each point's index into them
    (-1 where the label is missing: NaN, None or ``pd.NA``); or ``(None, values)`` for a
    continuous float label (more than 20 distinct values). NaN labels used to vanish from the
    plot (``x == nan`` is never true) and None among strings failed to sort."""
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(
            f"labels must have shape ({n},) to match the embedding, got {labels.shape}."
        )
    if labels.dtype.kind == "f":
        missing = np.isnan(labels)
        distinct = np.unique(labels[~missing])
        if len(distinct) > 20:
            return None, labels.astype(float)
        if np.array_equal(distinct, np.round(distinct)):  # class numbers stored as floats
            labels = np.where(missing, 0, labels).astype(np.int64)
    elif labels.dtype.kind == "O":
        missing = np.array([is_missing_label(v) for v in labels], bool)
        labels = labels.astype(str)
    else:
        missing = np.zeros(n, bool)
    names, inverse = np.unique(labels[~missing], return_inverse=True)
    codes = np.full(n, -1)
    codes[~missing] = inverse
    return [str(c) for c in names], codes


def _finish(fig, path, rect=None):
    fig.tight_layout(rect=rect)
    if path is not None:
        import matplotlib.pyplot as plt

        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig
