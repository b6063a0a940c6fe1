r"""The pathwise error of a deterministic sampler: distance to the exact probability-flow map.

A deterministic sampler (a probability-flow integrator: `sdelab.DDIM`, `sdelab.DPMSolver`,
`sdelab.Heun`, ``EulerMaruyama(probability_flow=True)``, `sdelab.ProbabilityFlowODE`, ...)
maps each prior draw $x_T$ to a sample $\hat x_\epsilon(x_T)$. The exact probability-flow
ODE (Song et al. 2021, eq. 13) maps the same draw to $x^\star_\epsilon(x_T)$, and

$$ e_{\mathrm{path}} = \Big(\frac1n \sum_{i=1}^n
   \big\lVert \hat x_\epsilon(x_T^{(i)}) - x^\star_\epsilon(x_T^{(i)}) \big\rVert^2\Big)^{1/2} $$

(`sdelab._convergence.flow_error`) is its discretisation error alone. Unlike a distance
between sample distributions it has no Monte-Carlo floor: two samplers whose energy
distances at $n = 1000$ both sit inside the noise band still differ here by their
integration error, which falls like $h^p$ with the method's order $p$.

The reference $x^\star$ is `sdelab._convergence.exact_flow_solver` (scipy's DOP853 at
``rtol = atol = 1e-10``, float64) started from the cell's own $x_T$: drawn as `sdelab.sample`
draws it (``sde.prior_sample`` with a generator seeded with the cell's seed, in the cell's
dtype and device), then promoted to float64. It depends only on (dataset, SDE, seed, sample
size, $\epsilon$, dtype, device), not on the solver, so `FlowReferences` computes it once per
run and keeps it in the output folder (``pathwise/<key>.pt``), where a resumed run finds it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor

from .._convergence import exact_flow_solver, flow_error
from ..solvers.base import CountingScore

__all__ = ["PATHWISE", "FlowReferences", "exact_flow_map", "pathwise_error"]

#: the record key of the pathwise error (``None`` for stochastic solvers)
PATHWISE = "pathwise"

REFERENCE_FOLDER = "pathwise"


@contextmanager
def one_thread() -> Iterator[None]:
    """torch and numpy's BLAS on one thread inside the block (then as they were).

    Reductions summed by a different number of threads round differently, and the adaptive
    solver's step control amplifies a last-bit difference into a different step sequence: the
    same flow map computed with 1 and 2 torch threads, or with 1 and 2 OpenBLAS threads (which
    ``torchrun`` sets through ``OMP_NUM_THREADS=1``), differed by up to 4e-15 on the 16-D
    mixture. One thread makes the reference the same in every process and launcher."""
    from threadpoolctl import threadpool_limits

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(n)


def exact_flow_map(sde, score, x_T: Tensor, eps: float) -> Tensor:
    r"""$x^\star_\epsilon(x_T)$: the probability-flow ODE of ``sde`` with ``score`` from
    ``x_T`` at $T$ to ``eps``, solved in float64 by `sdelab._convergence.exact_flow_solver`
    (``score`` must accept float64 inputs), on one thread (`one_thread`: bit for bit the same
    map whatever the process's thread settings)."""
    solver = exact_flow_solver()
    x = x_T.to(torch.float64)
    with one_thread():
        return solver.solve(sde, CountingScore(score), x, sde.T, eps).x


class FlowReferences:
    """Exact flow maps of the prior draws of a run's cells, each computed once.

    Args:
        folder: where the maps are kept between runs (``OUT/pathwise``), or ``None``
            (memory only).
    """

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = None if folder is None else Path(folder)
        self._memory: dict[str, Tensor] = {}

    @staticmethod
    def key(cell, device) -> str:
        """SHA-1 of what the map depends on: the dataset, SDE, seed, sample size, eps, dtype,
        device type and the reference solver."""
        blob = {
            "dataset": cell.dataset,
            "sde": cell.sde,
            "seed": cell.seed,
            "n_samples": cell.n_samples,
            "eps": cell.eps,
            "dtype": cell.dtype,
            "device": torch.device(device).type,
            "reference": repr(exact_flow_solver()),
        }
        return hashlib.sha1(json.dumps(blob, sort_keys=True).encode()).hexdigest()

    def get(self, cell, sde, mixture, shape, device) -> Tensor:
        """The float64 exact flow map of ``cell``'s prior draw, shape ``shape``, on ``device``;
        ``mixture`` (an `sdelab.GaussianMixture`) gives the exact score."""
        key = self.key(cell, device)
        if key in self._memory:
            return self._memory[key]
        x = self._load(key, shape)
        if x is None:
            gen = torch.Generator(device=device).manual_seed(cell.seed)
            x_T = sde.prior_sample(
                shape, generator=gen, device=device, dtype=getattr(torch, cell.dtype)
            )
            score = mixture.to(device=device, dtype=torch.float64).score(sde)
            x = exact_flow_map(sde, score, x_T, cell.eps)
            self._save(key, x)
        x = x.to(device=device, dtype=torch.float64)
        self._memory[key] = x
        return x

    def _path(self, key: str) -> Path | None:
        return None if self.folder is None else self.folder / f"{key}.pt"

    def _load(self, key: str, shape) -> Tensor | None:
        path = self._path(key)
        if path is None or not path.is_file():
            return None
        try:
            x = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a torn or foreign file: recompute it
            return None
        ok = isinstance(x, Tensor) and tuple(x.shape) == tuple(shape)
        return x if ok and x.dtype == torch.float64 else None

    def _save(self, key: str, x: Tensor) -> None:
        path = self._path(key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # ranks may write the same map
        torch.save(x.detach().cpu(), tmp)
        os.replace(tmp, path)


def pathwise_error(x: Tensor, exact: Tensor) -> float | None:
    """`flow_error` of a sample against its exact flow map, ``None`` when not finite."""
    err = flow_error(x.to(exact), exact)
    return err if math.isfinite(err) else None
