"""Privacy-preserving aggregates: differential privacy and additively homomorphic sums.

* :mod:`twinedge.privacy.dp` releases counts, sums, means and histograms with the Laplace
  or Gaussian mechanism of OpenDP; every release says its mechanism, ε, δ, sensitivity and
  noise scale.
* :mod:`twinedge.privacy.paillier` adds up the contributions of several domains under
  Paillier encryption so that only the total is ever decrypted.

Both need the ``privacy`` extra (``pip install 'twinedge[privacy]'``).
"""

from __future__ import annotations

from twinedge.privacy.dp import (
    MECHANISMS,
    Noise,
    Release,
    gaussian_scale,
    laplace_scale,
    release_count,
    release_histogram,
    release_mean,
    release_sum,
)

__all__ = [
    "MECHANISMS",
    "Noise",
    "Release",
    "gaussian_scale",
    "laplace_scale",
    "release_count",
    "release_histogram",
    "release_mean",
    "release_sum",
]
