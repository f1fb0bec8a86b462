"""Are two identical runs bit-identical on this device? And a run split 100 + 200 iterations?

Digits, perplexity 30, the classic optimizer with early exaggeration, 300 iterations, for the
exact and the interpolation backends. Prints the largest coordinate difference of each pair
(0.0 = bit-identical). On a GPU compare ``XLA_FLAGS=--xla_gpu_deterministic_ops=true`` (what
``import tsnejax`` sets) with ``TSNEJAX_GPU_DETERMINISTIC=0`` (XLA's atomics, faster): there the
``deterministic_scatter`` backends are the ones expected to stay at 0.0.

    python benchmarks/check_determinism.py
"""

from __future__ import annotations

import functools

import numpy as np


def main() -> None:
    from sklearn.datasets import load_digits

    import tsnejax  # noqa: F401  (sets the XLA flags before JAX starts)
    from tsnejax.affinity import perplexity_affinities
    from tsnejax.gradients import exact_backend, get_backend
    from tsnejax.init import pca
    from tsnejax.knn import exact_knn
    from tsnejax.optim import classic
    from tsnejax.run import build_step, init_state, optimize
    from tsnejax.schedules import Phases, auto_learning_rate, exaggeration_schedule

    X = load_digits().data.astype(np.float32)
    P = perplexity_affinities(exact_knn(X, 90), 30.0)
    ex = exaggeration_schedule(12.0, 100, 1.0)
    phases = Phases.of({0: {"exaggeration": 12.0}, 100: {"exaggeration": 1.0}})
    for name, backend in (
        ("exact", exact_backend()),
        ("interpolation", get_backend("interpolation")),
        (
            "interpolation, deterministic_scatter",
            get_backend("interpolation", deterministic_scatter=True),
        ),
        ("splat, deterministic_scatter", get_backend("splat", deterministic_scatter=True)),
    ):
        opt = classic(auto_learning_rate(len(X), ex), 0.8)
        step = build_step(backend, opt)
        s0 = init_state(pca(X), opt)
        run = functools.partial(optimize, step, P=P, kl=False, phases=phases)
        a = np.asarray(run(state=s0, n_iter=300).state.embedding)
        b = np.asarray(run(state=s0, n_iter=300).state.embedding)
        mid = run(state=s0, n_iter=100).state
        c = np.asarray(run(state=mid, n_iter=200).state.embedding)
        print(
            f"{name}: same call twice max|diff| {np.abs(a - b).max():.6g}; "
            f"resumed 100 + 200 max|diff| {np.abs(a - c).max():.6g}",
            flush=True,
        )


if __name__ == "__main__":
    main()
