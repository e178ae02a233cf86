"""The end-of-run partition of UMAP + GMM on the backbone features (the N2D recipe).

CC, SACC and GCC train their cluster head under a uniform prior on cluster sizes, and their
backbone features ``h`` learn its evened partition too: on the long-tailed digits k-means on ``h``
gave no more than the head (CC 0.603-0.615), and the k-means restarts of
:mod:`clustering.kmeans_restarts` could not reach the classes. The k-means objective rewards
cutting a wide class in two and pooling two tight small ones; a neighbour graph does not.

So, as in N2D (McConville et al., "N2D: (Not Too) Deep Clustering via Clustering the Local Manifold
of an Autoencoded Embedding", ICPR 2020), the partition comes from a UMAP embedding of ``h`` (built
from the k-nearest-neighbour graph: how near two images are counts through their neighbours, not
the class's spread) and a Gaussian mixture on it with full covariances (clusters of any size and
shape, no prior on sizes). Over 57 checkpoints of CC, SACC and GCC on 13 sets of the suite it
gained 0.086 ACC on average over the heads' end of a run (refit, restarts and moves included), 35
by more than 0.05; it lost on 5, by at most 0.053, mostly where the head already had 0.97-0.99
(README, "UMAP + GMM at the end of a run"). k-means on the same
embedding gained less (0.077) and lost more often (9 of 57).

The partition is written into the head as nearest centroids in ``h`` (:mod:`clustering.head_refit`),
so another split, the checkpoint and the studio see it; that keeps most of the gain (the centroids
cost 0.00-0.04 against the GMM's own labels). UMAP is seeded and single-threaded, so the same
features give the same partition; but features that differ in the fifth decimal (the trainer's
channels-last layout against ``eval``'s) can give another graph, so ``eval --umap-gmm`` on a
checkpoint is the same step, not always the same clusters as the run's own end.

UCCC's head has no prior on cluster sizes, and where it comes out even it is its best: there UMAP +
GMM cost it (digits-rot20 0.989 -> 0.915). Where its largest cluster holds more than 1.3 times the
mean at the end (the classes differ in size, or the head cut or pooled classes), UMAP + GMM on its
features lifted it (the long-tailed digits 0.73-0.85 -> 0.84-0.95), so its default is
:data:`IF_UNEVEN`, decided by the trainer from the head's partition then.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor, nn

#: UMAP's output dimensions: enough room for 200 clusters to stay apart (N2D uses the number of
#: clusters; 10 was level with it on the suite and keeps the GMM's full covariances small).
COMPONENTS = 10
#: UMAP's neighbours per image, its default; the suite's smallest classes hold 10 images.
NEIGHBORS = 15
#: GMM fits from k-means starts; the best likelihood is kept.
GMM_STARTS = 3
#: Added to each covariance's diagonal: UMAP packs a cluster tight (min_dist 0), and a cluster of a
#: few images in 10 dimensions would otherwise have a singular covariance.
GMM_REG_COVAR = 1e-4
#: Fewer images than this make no neighbour graph worth the name (UMAP wants more rows than neighbours).
MIN_IMAGES = 20
#: The ``umap_gmm`` setting that applies the partition only where the head's clusters come out
#: uneven at the end of the run (:func:`clustering.methods.balance_switch.uneven`): UCCC's default.
IF_UNEVEN = "if_uneven"


def too_small(num_samples: int, num_clusters: int) -> str | None:
    """Why the data set is too small for the partition, or None."""
    if num_samples < MIN_IMAGES or num_samples < 2 * num_clusters:
        return (f"{num_samples} images for {num_clusters} clusters: UMAP + GMM needs at least {MIN_IMAGES} images "
                f"and two per cluster")  # fmt: skip
    return None


def umap_gmm_partition(features: Tensor, num_clusters: int, seed: int = 0) -> Tensor:
    """The GMM's clusters (N,) on a UMAP embedding of the rows of ``features`` (N, F), compared by
    cosine. Deterministic for a ``seed`` (UMAP then runs on one thread). Raises ValueError where
    :func:`too_small` says why."""
    import umap  # numba compiles it on first use: only runs that ask for it pay
    from sklearn.mixture import GaussianMixture

    n = features.shape[0]
    why = too_small(n, num_clusters)
    if why is not None:
        raise ValueError(why)
    x = nn.functional.normalize(features.detach().double(), dim=1).cpu().numpy().astype(np.float32)
    with warnings.catch_warnings():  # "n_jobs overridden by random_state": the point of the seed
        warnings.simplefilter("ignore", UserWarning)
        embedding = umap.UMAP(n_components=COMPONENTS, n_neighbors=min(NEIGHBORS, n - 1), min_dist=0.0,
                              metric="cosine", random_state=seed).fit_transform(x)  # fmt: skip
    gmm = GaussianMixture(num_clusters, covariance_type="full", n_init=GMM_STARTS, reg_covar=GMM_REG_COVAR,
                          random_state=seed).fit(embedding)  # fmt: skip
    return torch.from_numpy(gmm.predict(embedding)).long()
