"""What checkpoints cost: ``fit`` and ``fit_batch`` with saves every k iterations against none,
and a run cut in the middle and resumed against the uninterrupted run.

- ``fit``: the default config on P and the PCA start given (no kNN in the time), warm, wall
  seconds of the whole call with ``checkpoint_every`` None / 50 / 10 (rounds interleaved,
  median), the file's size, and the resumed run's embedding against the uninterrupted one.
- ``fit_batch``: four trials (opt-SNE at two learning rates, scikit-learn's rule, the fixed
  schedule with a shorter main phase) without and with saves every 50 iterations; each save
  also carries every trial's stopping record.
- ``resume``: the run stopped by a callback at half its length (saved there), then the same
  call again: the second call's wall time against the uninterrupted run's second half (the
  whole run's median less the cut run's).

    python benchmarks/bench_checkpoint.py                 # digits, ~1 min
    python benchmarks/bench_checkpoint.py --size 20000    # MNIST-20k PCA-50

Writes benchmarks/out/bench_checkpoint{tag}.{csv,json}.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    found_benchmark_data,
    machine_info,
    print_table,
    size_parser,
    write_results,
)


def _wall(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def _interleaved(run, settings, rounds: int) -> dict:
    """Wall seconds of ``run(every)`` for each setting, the settings taken in turn each round."""
    times: dict = {every: [] for every in settings}
    for _ in range(rounds):
        for every in settings:
            times[every].append(_wall(lambda e=every: run(e))[1])
    return times


def _rows(run: str, n: int, times: dict, path_of, trial_iter: str | None = None) -> list[dict]:
    """A row per setting: median seconds, the ratio to no checkpoint, the file's size."""
    import numpy as np

    base = float(np.median(times[None]))
    out = []
    for every, ts in times.items():
        seconds = float(np.median(ts))
        size = None if every is None else path_of(every).stat().st_size
        row = {"run": run, "n": n, "checkpoint_every": every, "seconds": seconds}
        out.append({**row, "ratio": seconds / base, "file_bytes": size, "trial_iter": trial_iter})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = size_parser(__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    data = found_benchmark_data(args.size, args.data_dir)
    if data is None:
        return 0
    import jax
    import numpy as np

    import tsnejax

    X = data[0]
    n = len(X)
    key = jax.random.key(0)
    cfg = tsnejax.TSNEConfig()
    prep = tsnejax.pipeline.prepare(key, X, cfg)
    given = dict(affinities=prep.P, initialization=prep.Y0)
    tmp = Path(tempfile.mkdtemp())
    rows = []

    def fit(every, path=None, **kw):
        ck = None if every is None else (path or tmp / f"fit{every}.npz")
        if ck is not None and path is None:
            ck.unlink(missing_ok=True)  # a fresh run each round, not a finished one resumed
        return tsnejax.fit(key, None, cfg, checkpoint=ck, checkpoint_every=every, **given, **kw)

    ref = fit(None)  # compiles
    times = _interleaved(fit, (None, 50, 10), args.rounds)
    base = float(np.median(times[None]))
    rows += _rows("fit", n, times, lambda every: tmp / f"fit{every}.npz")
    # Cut at half the run, then resume: the second call against the uninterrupted second half.
    half = cfg.total_iter // 2
    halves, resumes = [], []
    for r in range(args.rounds):
        cut = tmp / f"cut{r}.npz"
        halves.append(_wall(lambda c=cut: fit(50, c, callbacks=[lambda t, kl, Y: t >= half]))[1])
        resumed, seconds = _wall(lambda c=cut: fit(50, c))
        resumes.append(seconds)
    resume_s = float(np.median(resumes))
    second_half = base - float(np.median(halves))  # the uninterrupted run's rest
    rows.append(
        {
            "run": "fit resumed at half",
            "n": n,
            "checkpoint_every": 50,
            "seconds": resume_s,
            "ratio": resume_s / second_half,
            "same_embedding": bool(np.array_equal(resumed.embedding, ref.embedding)),
            "resumed_from": resumed.resumed_from,
        }
    )
    base_cfg = tsnejax.TSNEConfig.make()
    configs = [
        base_cfg.replace(stopping="optsne"),
        base_cfg.replace(stopping="optsne", learning_rate=200.0),
        base_cfg.replace(stopping="sklearn"),
        base_cfg.replace(n_iter=300),
    ]
    keys = list(jax.random.split(key, len(configs)))
    batch_path = tmp / "batch.npz"

    def batch(every):
        batch_path.unlink(missing_ok=True)
        ck = None if every is None else batch_path
        return tsnejax.fit_batch(
            keys,
            None,
            configs,
            affinities=prep.P,
            initializations=prep.Y0,
            checkpoint=ck,
            checkpoint_every=every,
        )

    batch_ref = batch(None)
    btimes = _interleaved(batch, (None, 50), args.rounds)
    ends = "/".join(map(str, batch_ref.trial_iter))
    rows += _rows("fit_batch (4 trials, rules)", n, btimes, lambda every: batch_path, ends)
    cols = ["run", "n", "checkpoint_every", "seconds", "ratio", "file_bytes"]
    print_table(rows, cols + ["same_embedding", "resumed_from", "trial_iter"])
    meta = {**machine_info(), "size": args.size, "rounds": args.rounds}
    paths = write_results(f"bench_checkpoint{args.tag}", rows, meta)
    print("wrote", *paths)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
