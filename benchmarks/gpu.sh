#!/usr/bin/env bash
# GPU benchmarks (issue #3 must-show 4, #7, #8), as run on a lent H100 through the device tool:
#   bash benchmarks/gpu.sh STAGE...   with TSNEJAX_DATA pointing at a folder holding mnist.npz.
# Stages: check (devices + GPU test subset), scatter (deterministic_scatter cost), knn (exact vs
# the cluster-pruned ivf search on the GPU, recall), cache (compile cache), gradient
# (bench_gradient 10k/70k/250k, openTSNE on all host cores), large (1M mixture, exact kNN on the
# GPU), sweep (bench_sweep, vmap batches), transform (bench_transform), e2e (bench_end_to_end
# digits + 70k, cold/warm, determinism), metric (bench_metric: cosine/correlation/Manhattan and
# sparse input at 10k), dims (bench_dimensions: MNIST-20k in 2/5/10-D, exact above 3-D),
# perplexity (bench_perplexity: MNIST-10k, candidates sequential and as one vmapped batch),
# stopping (bench_stopping --only ruled: MNIST-10k, opt-SNE at four learning rates as four fits
# and as one fit_batch whose trials switch phase and stop at their own iterations).
# Output: benchmarks/out/*_gpu.* and, when $OUT is set,
# copies there.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:-}:$PWD"
JOBS=$(nproc)
TAG=${TAG:-_gpu}
for stage in "$@"; do
  echo "=== $stage $(date +%T)"
  case $stage in
    check)
      python3 -c "import jax, tsnejax; print(jax.__version__, jax.devices())"
      python3 benchmarks/check_determinism.py
      TSNEJAX_GPU_DETERMINISTIC=0 python3 benchmarks/check_determinism.py
      python3 -m pytest -q -p no:cacheprovider tests/test_gradients.py tests/test_grid_gradients.py tests/test_run.py -m "not slow" 2>&1 | tail -5
      ;;
    scatter)
      # deterministic_scatter vs XLA's scatter, with and without the global determinism flag
      python3 benchmarks/bench_scatter.py --tag "${TAG}_flag"
      TSNEJAX_GPU_DETERMINISTIC=0 python3 benchmarks/bench_scatter.py --tag "${TAG}_noflag"
      TSNEJAX_GPU_DETERMINISTIC=0 python3 benchmarks/check_determinism.py
      ;;
    knn)
      # exact vs ivf (tiles vmapped 64 at a time on an accelerator) with recall, up to 1M
      python3 benchmarks/bench_knn.py --sizes 70000 250000 1000000 --data pca50 \
        --pynndescent-sizes --exact-max 1000000 --tag "${TAG}_knn"
      ;;
    gradient)
      python3 benchmarks/bench_gradient.py --sizes 10000 70000 250000 --full-at 10000 70000 \
        --neighbors exact --opentsne-jobs "$JOBS" --tag "${TAG#_}"
      ;;
    cache)
      # Order effect (first size in a process pays GPU warm-up) and the persistent compilation
      # cache: the same 70k + 10k runs twice in fresh processes sharing one cache folder.
      export JAX_COMPILATION_CACHE_DIR=/tmp/tsnejax_jax_cache JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
      for run in cold warm; do
        python3 benchmarks/bench_gradient.py --sizes 70000 10000 --full-at 70000 10000 \
          --neighbors exact --no-peers --tag "${TAG#_}_cache_$run"
      done
      unset JAX_COMPILATION_CACHE_DIR JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS
      ;;
    e2e)
      # issue #18 must-show 3: digits and MNIST-70k end to end with the defaults, cold and warm
      # (3 warm rounds), same key -> same embedding across fresh processes; openTSNE on all cores
      python3 benchmarks/bench_end_to_end.py --sizes digits 70000 --rounds 3 --jobs "$JOBS" \
        --tag "${TAG}_e2e"
      ;;
    large)
      python3 benchmarks/bench_large.py --n 1000000 --neighbors exact --tag "$TAG"
      ;;
    metric)
      python3 benchmarks/bench_metric.py --tag "${TAG}_metric"
      ;;
    dims)
      # n_components above 3 runs the exact gradient: MNIST-20k in 2/5/10-D (no CPU peer here)
      python3 benchmarks/bench_dimensions.py --size 20000 --dims 2 5 10 --no-peers --tag "${TAG}_dims"
      ;;
    perplexity)
      # select_perplexity on the device: single fits vs one vmapped batch (openTSNE on the host)
      for mode in sequential vmap; do
        python3 benchmarks/bench_perplexity.py --size 10000 --mode $mode --tag "${TAG}_perplexity_$mode"
      done
      ;;
    stopping)
      python3 benchmarks/bench_stopping.py --size 10000 --only ruled --tag "${TAG}_stopping"
      ;;
    sweep)
      # openTSNE left out here: the GPU target is vmapped vs one-by-one on the same device.
      python3 benchmarks/bench_sweep.py --n 10000 --batch 2 4 8 \
        --skip "sweep vmap 2 host devices" "openTSNE one-by-one" --tag "$TAG"
      ;;
    transform)
      python3 benchmarks/bench_transform.py --tag "$TAG"
      ;;
    *) echo "unknown stage $stage"; exit 2 ;;
  esac
  if [ -n "${OUT:-}" ]; then cp benchmarks/out/*gpu* "$OUT"/ 2>/dev/null; fi
done
