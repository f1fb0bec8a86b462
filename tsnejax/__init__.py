"""tsnejax: t-SNE in JAX for optimizer experimentation.

Public API (the modules underneath are public too: ``tsnejax.knn``, ``tsnejax.knn_index``,
``tsnejax.affinity``, ``tsnejax.init``, ``tsnejax.gradients``, ``tsnejax.optim``,
``tsnejax.schedules``, ``tsnejax.config``, ``tsnejax.build``, ``tsnejax.run``,
``tsnejax.pipeline``, ``tsnejax.batch``, ``tsnejax.opt_sne``, ``tsnejax.metrics``,
``tsnejax.presets``, ``tsnejax.checkpoint``, ``tsnejax.memory``, ``tsnejax.stopping``,
``tsnejax.perplexity_selection``).
"""

from tsnejax._jax_cache import configure_compilation_cache
from tsnejax._xla_flags import configure_cpu_flags, configure_gpu_flags

configure_cpu_flags()
configure_gpu_flags()
configure_compilation_cache()

from tsnejax import affinity as affinity
from tsnejax import batch as batch
from tsnejax import build as build
from tsnejax import checkpoint as checkpoint
from tsnejax import config as config
from tsnejax import gradients as gradients
from tsnejax import init as init
from tsnejax import knn as knn
from tsnejax import knn_index as knn_index
from tsnejax import memory as memory
from tsnejax import metrics as metrics
from tsnejax import optim as optim
from tsnejax import presets as presets
from tsnejax import run as run
from tsnejax import schedules as schedules
from tsnejax import stopping as stopping
from tsnejax.affinity import Affinities as Affinities
from tsnejax.affinity import perplexity_affinities as perplexity_affinities
from tsnejax.affinity import precomputed_affinities as precomputed_affinities
from tsnejax.affinity import uniform_affinities as uniform_affinities
from tsnejax.batch import BatchResult as BatchResult
from tsnejax.batch import fit_batch as fit_batch
from tsnejax.config import AffinityConfig as AffinityConfig
from tsnejax.config import GradientConfig as GradientConfig
from tsnejax.config import OptimizerConfig as OptimizerConfig
from tsnejax.config import ScheduleConfig as ScheduleConfig
from tsnejax.config import TSNEConfig as TSNEConfig
from tsnejax.estimator import TSNE as TSNE
from tsnejax.estimator import trustworthiness_scorer as trustworthiness_scorer
from tsnejax.gradients import exact_gradient as exact_gradient
from tsnejax.gradients import exact_kl_divergence as exact_kl_divergence
from tsnejax.knn import KNNGraph as KNNGraph
from tsnejax.knn import nearest_neighbors as nearest_neighbors
from tsnejax.knn_ivf import IVFSearch as IVFSearch
from tsnejax.memory import InsufficientMemoryError as InsufficientMemoryError
from tsnejax.optim import classic as classic
from tsnejax.perplexity_selection import PerplexitySelection as PerplexitySelection
from tsnejax.perplexity_selection import select_perplexity as select_perplexity
from tsnejax.pipeline import TSNEResult as TSNEResult
from tsnejax.pipeline import fit as fit
from tsnejax.run import DivergenceError as DivergenceError
from tsnejax.run import EmbeddingScaleWarning as EmbeddingScaleWarning
from tsnejax.run import build_step as build_step
from tsnejax.run import init_state as init_state
from tsnejax.run import optimize as optimize
from tsnejax.schedules import Phases as Phases

__version__ = "0.1.0"

__all__ = [
    "Affinities",
    "AffinityConfig",
    "BatchResult",
    "GradientConfig",
    "OptimizerConfig",
    "Phases",
    "ScheduleConfig",
    "batch",
    "build",
    "config",
    "fit_batch",
    "DivergenceError",
    "EmbeddingScaleWarning",
    "InsufficientMemoryError",
    "PerplexitySelection",
    "KNNGraph",
    "IVFSearch",
    "TSNE",
    "trustworthiness_scorer",
    "TSNEConfig",
    "TSNEResult",
    "affinity",
    "build_step",
    "checkpoint",
    "classic",
    "exact_gradient",
    "exact_kl_divergence",
    "fit",
    "gradients",
    "init",
    "init_state",
    "knn",
    "knn_index",
    "metrics",
    "nearest_neighbors",
    "optim",
    "optimize",
    "perplexity_affinities",
    "precomputed_affinities",
    "presets",
    "run",
    "schedules",
    "select_perplexity",
    "stopping",
    "uniform_affinities",
]

#: Submodules imported on first attribute access (``tsnejax.plot`` pulls in matplotlib).
_LAZY_SUBMODULES = ("plot", "sweep", "transform", "large_data", "data", "opt_sne", "tl", "diff")


def __getattr__(name: str):
    if name in _LAZY_SUBMODULES:
        import importlib

        return importlib.import_module(f"tsnejax.{name}")
    raise AttributeError(f"module 'tsnejax' has no attribute {name!r}")
