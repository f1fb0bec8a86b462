"""Peer conventions by name: ``TSNEConfig.from_preset("sklearn")`` and ``TSNE(preset=...)``.

Each preset sets every :class:`tsnejax.pipeline.TSNEConfig` field in which openTSNE 1.0.4,
FIt-SNE 1.2.1 and scikit-learn 1.9.1 differ (``../shared/REFERENCE.md``, "Faithfulness
contract"); fields not listed keep the defaults, which are openTSNE's.

========================  ==================  ==================  =========================
field                     ``"opentsne"``      ``"fitsne"``        ``"sklearn"``
========================  ==================  ==================  =========================
learning_rate "auto"      N / exaggeration    max(200, N / 12)    max(N / 12 / 4, 50)
momentum                  0.8, 0.8            0.5, then 0.8       0.5, then 0.8
                                              at 250              at 250
gains                     0.8 g + 0.01        max(0.8 g, 0.01)    max(0.8 g, 0.01), no growth
                                                                  on the first step
iterations (EE + main)    250 + 500           250 + 500           250 + 750
kNN k                     3 perplexity        3 perplexity        3 perplexity + 1
gradient scale            x1                  x1                  x4 (the true gradient)
re-centring every step    yes                 yes                 no
max_step_norm             5                   5                   none
========================  ==================  ==================  =========================

Not covered: FIt-SNE's uncapped box count above 200 (tsnejax caps at ``max_boxes``),
scikit-learn's perplexity tolerance 1e-5 (tsnejax calibrates to 1e-8), its stopping rule (a
separate setting, ``stopping="sklearn"``: with scikit-learn's defaults it ran all 1000
iterations on digits anyway, docs/optimizers.md), scikit-learn's 3-D kernel (it uses a
Student-t with ``n_components - 1`` degrees of freedom, ``(1 + d^2/2)^{-3/2}`` in 3-D, which
the ``(1 + d^2/dof)^{-dof}`` family cannot express; in 1-D and 2-D both are ``(1 + d^2)^{-1}``),
and each peer's kNN search.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

__all__ = ["PRESETS", "preset_fields"]

_OPENTSNE = {
    "learning_rate_rule": "opentsne",
    "initial_momentum": 0.8,
    "final_momentum": 0.8,
    "gains_rule": "opentsne",
    "early_exaggeration_iter": 250,
    "n_iter": 500,
    "n_neighbors": "3p",
    "gradient_scale": 1.0,
    "recenter": True,
    "max_step_norm": 5.0,
}
_MOMENTUM_SWITCH = {"initial_momentum": 0.5, "final_momentum": 0.8}

#: Field values per preset (read-only).
PRESETS: MappingProxyType = MappingProxyType(
    {
        "opentsne": MappingProxyType(_OPENTSNE),
        "fitsne": MappingProxyType(
            {
                **_OPENTSNE,
                **_MOMENTUM_SWITCH,
                "learning_rate_rule": "fitsne",
                "gains_rule": "fitsne",
            }
        ),
        "sklearn": MappingProxyType(
            {
                **_OPENTSNE,
                **_MOMENTUM_SWITCH,
                "learning_rate_rule": "sklearn",
                "gains_rule": "sklearn",
                "n_iter": 750,
                "n_neighbors": "3p+1",
                "gradient_scale": 4.0,
                "recenter": False,
                "max_step_norm": None,
            }
        ),
    }
)


def preset_fields(name: str) -> dict[str, Any]:
    """The config fields preset ``name`` sets (a fresh dict)."""
    if name not in PRESETS:
        raise ValueError(f"preset={name!r} is not one of {sorted(PRESETS)}.")
    return dict(PRESETS[name])
