"""tsnejax.tl.tsne on AnnData and the CLI on .h5ad, with a real single-cell matrix (issue #20):
scanpy's pbmc68k_reduced (700 cells, its 50-PC PCA) from the shared data folder."""

import json
import warnings

import numpy as np
import pytest

from tsnejax import TSNE, tl

anndata = pytest.importorskip("anndata", reason="the anndata extra is not installed")

SHORT = dict(early_exaggeration_iter=50, n_iter=100)


@pytest.fixture(scope="module")
def pbmc(data_dir):
    import pandas as pd

    f = data_dir / "pbmc68k_reduced.npz"
    if not f.exists():
        pytest.skip(f"{f} not found (set TSNEJAX_DATA to the shared data folder)")
    d = np.load(f)
    obs = pd.DataFrame({"bulk_labels": pd.Categorical(d["y"].astype(str))})
    obs.index = [f"cell{i}" for i in range(len(d["y"]))]
    adata = anndata.AnnData(X=d["X_scaled"].astype(np.float32), obs=obs)
    adata.obsm["X_pca"] = d["X_pca"]
    return adata, d["y"]


def test_tl_tsne_writes_obsm_and_uns_like_scanpy(pbmc):
    adata, y = pbmc
    ad = adata.copy()
    # scanpy's own signature is accepted (metric, use_fast_tsne, n_jobs, n_components)
    scanpy_args = dict(metric="euclidean", use_fast_tsne=True, n_jobs=None, n_components=2)
    assert tl.tsne(ad, use_rep="X_pca", random_state=0, **scanpy_args, **SHORT) is None
    Y = ad.obsm["X_tsne"]
    assert Y.shape == (ad.n_obs, 2) and np.isfinite(Y).all()
    info = ad.uns["tsne"]
    assert info["params"]["use_rep"] == "X_pca" and info["params"]["perplexity"] == 30.0
    assert info["params"]["metric"] == "euclidean"
    with pytest.raises(ValueError, match="metric='cosin' is not a metric"):
        tl.tsne(ad, metric="cosin")  # before the representation's PCA
    with pytest.warns(UserWarning, match="n_jobs=4 has no effect"):  # then fails on use_rep
        with pytest.raises(ValueError, match="use_rep='X_umap'"):
            tl.tsne(ad, n_jobs=4, use_rep="X_umap")
    assert info["n_iter"] == 150 and info["kl_divergence"] > 0
    assert np.asarray(info["kl_history"]).shape[1] == 2
    # The same embedding as the estimator on the same matrix and seed.
    ref = TSNE(random_state=0, **SHORT).fit_transform(adata.obsm["X_pca"])
    np.testing.assert_allclose(Y, ref, rtol=1e-5, atol=1e-5)
    from tsnejax.metrics import knn_accuracy

    assert knn_accuracy(Y, y, k=10) > 0.6  # cell types stay together (10 types, 700 cells)


def test_tl_tsne_metric_reaches_the_run(pbmc):
    """scanpy's metric= (it was refused unless 'euclidean') embeds in that metric."""
    adata, _ = pbmc
    ad = adata.copy()
    tl.tsne(ad, use_rep="X_pca", metric="cosine", random_state=0, **SHORT)
    assert ad.uns["tsne"]["params"]["metric"] == "cosine"
    ref = TSNE(metric="cosine", random_state=0, **SHORT).fit_transform(adata.obsm["X_pca"])
    np.testing.assert_allclose(ad.obsm["X_tsne"], ref, rtol=1e-5, atol=1e-5)
    euclidean = TSNE(random_state=0, **SHORT).fit_transform(adata.obsm["X_pca"])
    assert np.abs(euclidean - ref).max() > 1.0


def test_tl_tsne_key_added_copy_n_pcs_and_h5ad_round_trip(pbmc, tmp_path):
    adata, _ = pbmc
    out = tl.tsne(adata, n_pcs=20, key_added="X_tsne20", copy=True, random_state=1, **SHORT)
    assert "X_tsne20" in out.obsm and "X_tsne20" not in adata.obsm
    assert out.uns["X_tsne20"]["params"]["n_pcs"] == 20
    out.write_h5ad(tmp_path / "a.h5ad")  # everything written to uns is storable
    back = anndata.read_h5ad(tmp_path / "a.h5ad")
    np.testing.assert_array_equal(back.obsm["X_tsne20"], out.obsm["X_tsne20"])
    # An interrupted run (a callback stopped it at 90) resumes from its checkpoint.
    ck, run = tmp_path / "tl.npz", dict(use_rep="X_pca", copy=True, random_state=0, **SHORT)
    stop = dict(callbacks=lambda it, kl, Y: it >= 90, callbacks_every_iters=10)
    assert (
        tl.tsne(adata, checkpoint=ck, checkpoint_every=30, **stop, **run).uns["tsne"]["n_iter"]
        == 90
    )
    resumed = tl.tsne(adata, checkpoint=ck, **run)
    assert resumed.uns["tsne"]["resumed_from"] == 90
    np.testing.assert_array_equal(resumed.obsm["X_tsne"], tl.tsne(adata, **run).obsm["X_tsne"])


@pytest.mark.float32_only("scanpy's float32 graph against float64 distances")
def test_tl_tsne_reuses_the_scanpy_neighbors_graph(pbmc):
    import scipy.sparse as sp

    from tsnejax.knn import exact_knn

    adata, _ = pbmc
    ad = adata.copy()
    k = 31  # scanpy's n_neighbors includes the cell itself; obsp stores the other k - 1 = 30
    g = exact_knn(ad.obsm["X_pca"], k - 1)
    n = ad.n_obs
    rows = np.repeat(np.arange(n), k - 1)
    ad.obsp["distances"] = sp.csr_matrix(
        (np.asarray(g.distances).ravel(), (rows, np.asarray(g.indices).ravel())), shape=(n, n)
    )
    ad.uns["neighbors"] = {"distances_key": "distances", "params": {"n_neighbors": k}}
    tl.tsne(ad, perplexity=10, neighbors_key="neighbors", random_state=0, **SHORT)
    direct = TSNE(perplexity=10, random_state=0, **SHORT).fit(
        ad.obsm["X_pca"], neighbors=(np.asarray(g.indices), np.asarray(g.distances))
    )
    np.testing.assert_allclose(ad.obsm["X_tsne"], direct.embedding_, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"perplexity=30.5.*has 30.*n_neighbors=92"):
        tl.tsne(ad, perplexity=30.5, neighbors_key="neighbors")
    with pytest.raises(ValueError, match="neighbors_key='nn' is not in adata.uns"):
        tl.tsne(ad, neighbors_key="nn")
    # the graph's metric (sc.pp.neighbors records it) is the run's; another one is named
    ad.uns["neighbors"]["params"]["metric"] = "cosine"
    with pytest.raises(ValueError, match="metric='manhattan', but the graph .* metric='cosine'"):
        tl.tsne(ad, perplexity=10, neighbors_key="neighbors", metric="manhattan")
    tl.tsne(ad, perplexity=10, neighbors_key="neighbors", random_state=0, **SHORT)
    assert ad.uns["tsne"]["params"]["metric"] == "cosine"  # was recorded as 'euclidean'


@pytest.mark.slow  # 6 candidates + the fit (~20 s); the estimator's path is in the fast tier
def test_tl_tsne_chooses_the_perplexity_by_pbic(pbmc, tmp_path):
    adata, _ = pbmc
    out = tl.tsne(adata, perplexity="pbic", copy=True, random_state=0, **SHORT)
    params = out.uns["tsne"]["params"]
    pbic = {float(p): v for p, v in params["pbic"].items()}
    assert params["perplexity"] == "pbic" and sorted(pbic) == [5, 10, 20, 30, 50, 100]
    assert params["perplexity_chosen"] == min(pbic, key=pbic.get)
    out.write_h5ad(tmp_path / "a.h5ad")  # storable (string keys)
    assert anndata.read_h5ad(tmp_path / "a.h5ad").uns["tsne"]["params"]["pbic"] == params["pbic"]
    import scipy.sparse as sp

    from tsnejax.knn import exact_knn

    g = exact_knn(out.obsm["X_pca"], 30)  # a scanpy graph: each candidate needs its own k
    rows = np.repeat(np.arange(out.n_obs), 30)
    cols = np.asarray(g.indices).ravel()
    out.obsp["distances"] = sp.csr_matrix((np.asarray(g.distances).ravel(), (rows, cols)))
    out.uns["neighbors"] = {"distances_key": "distances", "params": {"n_neighbors": 31}}
    with pytest.raises(ValueError, match=r"'pbic'.*needs X and no \['neighbors'\]"):
        tl.tsne(out, perplexity="pbic", neighbors_key="neighbors")


def test_representation_rules_and_errors(pbmc):
    adata, _ = pbmc
    X, name = tl.representation(adata)
    assert name == "X_pca" and X.shape == (700, 50)
    with pytest.raises(ValueError, match="use_rep='X_umap' is not in adata.obsm"):
        tl.representation(adata, "X_umap")
    with pytest.raises(ValueError, match="n_pcs=80"):
        tl.representation(adata, n_pcs=80)


def test_keys_and_paths_of_the_wrong_type_are_named(pbmc, tmp_path):
    adata, _ = pbmc
    """``use_rep=["X_pca"]`` was "unhashable type: 'list'", ``key_added=-1`` wrote
    ``obsm[-1]``, ``read_h5ad(None)`` was ``os.stat``'s ``TypeError`` and a file that is not
    HDF5 h5py's ``OSError``."""
    for kw in ({"use_rep": ["X_pca"]}, {"key_added": -1}, {"neighbors_key": {"k": 1}}):
        with pytest.raises(ValueError, match="must be a string .* or None"):
            tl.tsne(adata.copy(), n_iter=5, **kw)
    (tmp_path / "not.h5ad").write_text("cells")
    with pytest.raises(ValueError, match="path must be an .h5ad file path"):
        tl.read_h5ad(None)
    with pytest.raises(ValueError, match="is not a readable .h5ad file"):
        tl.read_h5ad(tmp_path / "not.h5ad")


@pytest.mark.parametrize("layout", ["dense", "csr", "csc"])
def test_nan_or_inf_cells_are_named(layout):
    """Non-finite values in adata.X reached scikit-learn's PCA ("Input X contains NaN", naming
    neither adata nor the cells); in obsm they were reported as rows of "X"."""
    import scipy.sparse as sp

    X = np.random.default_rng(0).normal(size=(120, 60)).astype(np.float32)
    X[[3, 7], 5], X[10, 1] = np.nan, np.inf
    make = {"dense": np.asarray, "csr": sp.csr_matrix, "csc": sp.csc_matrix}[layout]
    with pytest.raises(ValueError, match=r"adata.X has 3 row\(s\) .* \(first: 3, 7, 10\)"):
        with pytest.warns(UserWarning, match="computing a 50-component PCA"):
            tl.tsne(anndata.AnnData(X=make(X)))
    with pytest.raises(ValueError, match=r"adata.X has 3 row"):
        tl.pca(anndata.AnnData(X=make(X)), 5)
    clean = anndata.AnnData(X=np.nan_to_num(X, posinf=0.0))
    clean.obsm["X_pca"] = X[:, :10]
    with pytest.raises(ValueError, match=r"adata.obsm\['X_pca'\] has 3 row"):
        tl.tsne(clean)


def test_without_x_pca_a_pca_is_computed_as_scanpy_does(pbmc):
    """765 variables and no X_pca: scanpy falls back to ``sc.pp.pca`` with a warning; so does
    tsnejax, storing X_pca (the exact SVD's scores up to sign), PCs and the variances."""
    import scipy.sparse as sp

    adata, _ = pbmc
    X = np.asarray(adata.X, np.float64)
    u, s, _ = np.linalg.svd(X - X.mean(0), full_matrices=False)
    exact = u * s
    for dense in (True, False):
        bare = anndata.AnnData(X=adata.X if dense else sp.csr_matrix(adata.X))
        with pytest.warns(UserWarning, match=r"765 variables and no obsm\['X_pca'\]: computing"):
            Xr, name = tl.representation(bare, n_pcs=20)
        assert name == "X_pca" and Xr.shape == (700, 20) and bare.obsm["X_pca"].shape == (700, 20)
        np.testing.assert_allclose(np.abs(Xr), np.abs(exact[:, :20]), atol=1e-3 * s[0])
        assert bare.varm["PCs"].shape == (765, 20)
        ratio = s[:20] ** 2 / (s**2).sum()
        np.testing.assert_allclose(bare.uns["pca"]["variance_ratio"], ratio, rtol=1e-4)
        with warnings.catch_warnings():  # the stored X_pca is used from then on, silently
            warnings.simplefilter("error")
            assert tl.representation(bare)[1] == "X_pca"
    # use_rep="X" on a wide sparse X embeds X itself, sparse (it was refused): as dense X
    counts = anndata.AnnData(X=sp.csr_matrix(adata.X))
    assert sp.issparse(tl.representation(counts, "X")[0])
    tl.tsne(counts, use_rep="X", metric="cosine", random_state=0, **SHORT)
    ref = TSNE(metric="cosine", random_state=0, **SHORT).fit_transform(np.asarray(adata.X))
    np.testing.assert_array_equal(counts.obsm["X_tsne"], ref)
    small = anndata.AnnData(X=sp.csr_matrix(adata.obsm["X_pca"][:, :10]))
    np.testing.assert_array_equal(tl.representation(small)[0], adata.obsm["X_pca"][:, :10])
    with pytest.raises(ValueError, match="n_comps=700 must be an int in"):
        tl.pca(anndata.AnnData(X=adata.X), 700)


def test_anndata_passed_to_fit_names_the_function(pbmc):
    adata, _ = pbmc
    with pytest.raises(ValueError, match=r"AnnData.*tsnejax.tl.tsne.*adata.obsm\['X_pca'\]"):
        TSNE().fit(adata)


def test_cli_embeds_an_h5ad(pbmc, tmp_path):
    from tsnejax.cli import main

    adata, _ = pbmc
    path = tmp_path / "pbmc.h5ad"
    adata.write_h5ad(path)
    out = tmp_path / "run"
    args = ["embed", "--input", str(path), "--use-rep", "X_pca", "--labels-key", "bulk_labels"]
    args += ["--early-exaggeration-iter", "50", "--n-iter", "100", "--save-h5ad"]
    assert main([*args, "--out", str(out)]) == 0
    Y = np.load(out / "embedding.npy")
    assert Y.shape == (700, 2) and (out / "embedding.png").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["source"].endswith("(X_pca)") and "knn_accuracy_10" in metrics
    saved = anndata.read_h5ad(out / "pbmc.h5ad")
    np.testing.assert_array_equal(saved.obsm["X_tsne"], Y)
    assert saved.uns["tsne"]["params"]["use_rep"] == "X_pca"


def test_cli_h5ad_errors(pbmc, tmp_path, capsys):
    from tsnejax.cli import main

    adata, _ = pbmc
    path = tmp_path / "pbmc.h5ad"
    adata.write_h5ad(path)
    assert (
        main(["embed", "--input", str(path), "--use-rep", "X_umap", "--out", str(tmp_path / "o")])
        == 1
    )
    assert "use_rep='X_umap' is not in adata.obsm" in capsys.readouterr().err
    assert main(["embed", "--use-rep", "X_pca", "--out", str(tmp_path / "o2")]) == 1
    assert ".h5ad input only" in capsys.readouterr().err
