import json
import subprocess
import sys

import numpy as np
import pytest

from tsnejax.cli import main

FAST = ["--early-exaggeration-iter", "50", "--n-iter", "50"]


def test_embed_default_digits_writes_three_files(tmp_path):
    out = tmp_path / "digits"
    assert main(["embed", "--out", str(out), *FAST]) == 0
    Y = np.load(out / "embedding.npy")
    assert Y.shape == (1797, 2)
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_samples"] == 1797 and m["source"] == "digits"
    assert set(m["timings_seconds"]) >= {"knn", "affinities", "compile", "optimize", "total"}
    assert np.isfinite(m["kl_divergence"]) and 0 <= m["knn_accuracy_10"] <= 1
    assert (out / "embedding.png").stat().st_size > 10_000


@pytest.mark.parametrize("fmt", ["npy", "npz", "csv"])
def test_embed_from_files(tmp_path, digits, fmt):
    X, y = digits[0][:200], digits[1][:200]
    path = tmp_path / f"data.{fmt}"
    if fmt == "npy":
        np.save(path, X)
    elif fmt == "npz":
        np.savez(path, X=X, y=y)
    else:
        np.savetxt(path, X, delimiter=",", header=",".join(f"f{i}" for i in range(64)), comments="")
    labels = tmp_path / "labels.npy"
    np.save(labels, y)
    args = [
        "embed",
        "--input",
        str(path),
        "--out",
        str(tmp_path / fmt),
        "--perplexity",
        "10",
        *FAST,
    ]
    if fmt != "npz":
        args += ["--labels", str(labels)]
    assert main(args) == 0
    m = json.loads((tmp_path / fmt / "metrics.json").read_text())
    assert m["n_samples"] == 200 and "knn_accuracy_10" in m


def test_embed_preset_optimizer_and_optsne(tmp_path):
    out = tmp_path / "adam"
    args = ["embed", "--out", str(out), "--preset", "sklearn", *FAST]
    assert main([*args, "--optimizer", "adam:learning_rate=0.5,b1=0.8"]) == 0
    cfg = json.loads((out / "metrics.json").read_text())["config"]
    assert cfg["optimizer"] == "adam" and cfg["learning_rate"] == 0.5
    assert cfg["optimizer_kwargs"] == [["b1", 0.8]] and cfg["gradient_scale"] == 4.0
    # Several perplexities are multiscale affinities, as TSNE(perplexity=[5, 30]) (they were
    # "unrecognized arguments").
    out = tmp_path / "multi"
    assert main(["embed", "--out", str(out), "--perplexity", "5", "30", *FAST]) == 0
    assert json.loads((out / "metrics.json").read_text())["config"]["perplexity"] == [5.0, 30.0]
    out = tmp_path / "optsne"
    state = tmp_path / "optsne.npz"
    args = ["embed", "--out", str(out), "--stopping", "optsne", "--checkpoint", str(state)]
    assert main(args) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["early_exaggeration_iter"] < 250 and m["total_iter"] < 750
    # The same command again resumes the finished checkpoint: the rule had stopped the run.
    Y = np.load(out / "embedding.npy")
    assert main(args) == 0
    np.testing.assert_array_equal(np.load(out / "embedding.npy"), Y)
    assert json.loads((out / "metrics.json").read_text())["total_iter"] == m["total_iter"]
    # scikit-learn's stopping settings turn its rule on, as the estimator's do.
    out = tmp_path / "sklearn_stop"
    assert main(["embed", "--out", str(out), "--preset", "sklearn", "--min-grad-norm", "1e-2"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["config"]["stopping"] == "sklearn" and m["config"]["min_grad_norm"] == 1e-2
    assert m["early_exaggeration_iter"] < 250 and m["total_iter"] < 1000


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--perplexity", "5000"], "largest allowed"),
        (["--method", "bh"], "negative_gradient_method='bh'"),
        (["--input", "/nonexistent/x.npy"], "does not exist"),
        (["--dataset", "mnist"], "not bundled"),
        (["--preset", "cuml"], "preset='cuml'"),
        (["--optimizer", "adam:lr=1"], "no argument ['lr']"),
        (["--optimizer", "adam:learning_rate"], "not key=value"),
        (["--stopping", "early"], "stopping='early'"),
    ],
)
def test_embed_errors_print_one_line_and_exit_1(tmp_path, capsys, args, fragment):
    assert main(["embed", "--out", str(tmp_path / "o"), *args]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tsnejax: error:") and fragment in lines[0]
    assert not (tmp_path / "o").exists()  # a failed run leaves no empty folder behind


def test_a_negative_count_is_a_usage_error(tmp_path, capsys):
    """``--metrics-queries -5`` ran as if 0 (the quality skipped) without a word."""
    with pytest.raises(SystemExit) as stop:
        main(["embed", "--out", str(tmp_path / "o"), "--metrics-queries", "-5"])
    assert stop.value.code == 2
    assert "argument --metrics-queries: must be >= 0, got -5" in capsys.readouterr().err


def test_embed_scores_few_points_too(tmp_path):
    """Up to 31 points the quality block was skipped without a word (evaluate's k = 1..30
    needed 31); it now runs with k up to n - 1."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "few.npz", X=rng.normal(size=(25, 5)), y=np.arange(25) % 3)
    out = tmp_path / "o"
    args = ["embed", "--input", str(tmp_path / "few.npz"), "--out", str(out), "--perplexity", "5"]
    assert main([*args, "--n-iter", "20"]) == 0
    quality = json.loads((out / "metrics.json").read_text())["quality"]
    assert quality["k_max"] == 24 and len(quality["nn_precision"]) == 24


def test_embed_error_from_a_real_process(tmp_path):
    """The same contract through the console entry point: exit status 1, one stderr line (the
    cases above run in-process: a process each cost 6-11 s of start-up on two cores)."""
    proc = subprocess.run(
        [sys.executable, "-m", "tsnejax.cli", "embed", "--out", str(tmp_path / "o")]
        + ["--perplexity", "5000"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tsnejax: error:")
    assert "largest allowed" in lines[0] and not (tmp_path / "o").exists()


def test_corrupt_and_unwritable(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    assert main(["embed", "--input", str(bad), "--out", str(tmp_path / "o")]) == 1
    assert not (tmp_path / "o").exists()
    (tmp_path / "kept").mkdir()  # a folder the user made is left alone, even empty
    assert main(["embed", "--input", str(bad), "--out", str(tmp_path / "kept")]) == 1
    assert (tmp_path / "kept").is_dir()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["embed", "--out", str(blocker / "sub")]) == 1


def test_metrics_verb_and_embed_quality(tmp_path, digits):
    X, y = digits[0][:400], digits[1][:400]
    np.savez(tmp_path / "d.npz", X=X, y=y)
    out = tmp_path / "emb"
    assert main(["embed", "--input", str(tmp_path / "d.npz"), "--out", str(out), *FAST]) == 0
    q = json.loads((out / "metrics.json").read_text())["quality"]
    assert len(q["nn_precision"]) == 30 and 0 < q["trustworthiness_5"] <= 1
    assert (out / "precision_recall.png").stat().st_size > 10_000
    mout = tmp_path / "m"
    args = [
        "metrics",
        "--input",
        str(tmp_path / "d.npz"),
        "--embedding",
        str(out / "embedding.npy"),
    ]
    assert main([*args, "--out", str(mout), "--n-queries", "100"]) == 0
    m = json.loads((mout / "metrics.json").read_text())
    assert m["n_queries"] == 100 and m["knn_accuracy_10"] > 0.8
    assert (mout / "precision_recall.png").stat().st_size > 10_000
    np.save(tmp_path / "short.npy", np.load(out / "embedding.npy")[:-1])
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tsnejax.cli",
            "metrics",
            "--input",
            str(tmp_path / "d.npz"),
            "--embedding",
            str(tmp_path / "short.npy"),
            "--out",
            str(mout),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and "same points" in proc.stderr and proc.stderr.count("\n") == 1


def test_sweep_and_report_verbs(tmp_path, capsys):
    config = tmp_path / "s.toml"
    config.write_text(
        'name = "cli"\n[data]\nname = "digits"\nn_points = 300\n[fixed]\nn_iter = 20\n'
        "early_exaggeration_iter = 10\n[grid]\nexaggeration = [1, 2]\n"
    )
    out = tmp_path / "sweep"
    assert main(["sweep", str(config), "--out", str(out), "--no-progress"]) == 0
    assert "2 trials: 2 run, 0 already finished" in capsys.readouterr().out
    assert main(["sweep", str(config), "--out", str(out), "--no-progress"]) == 1
    assert "--resume" in capsys.readouterr().err
    assert main(["report", str(out)]) == 0
    assert (out / "report" / "embeddings.png").exists()
    assert main(["report", str(tmp_path)]) == 1
    assert "not a sweep folder" in capsys.readouterr().err
    config.write_text('name = "cli"\n[data]\nname = "digits"\n[grid]\nlearning_rat = [1]\n')
    assert main(["sweep", str(config), "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "learning_rat" in err


def test_failed_sweep_leaves_no_empty_folder(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text(
        'name = "x"\n[data]\npath = "missing.npy"\n[grid]\nlearning_rate = [10, 20]\n'
        '[run]\nmetrics = ["kl"]\n'
    )
    assert main(["sweep", str(spec), "--out", str(tmp_path / "o"), "--no-progress"]) == 1
    assert not (tmp_path / "o").exists()


def test_progress_bar_draws_100_percent_once(tmp_path, capsys):
    """In a log (stderr not a terminal) each draw is a line: one line at 100 %, not three."""
    args = ["embed", "--out", str(tmp_path / "o"), "--verbose", *FAST]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert err.replace("\r", "\n").count("100%") == 1, err[-1500:]
