r"""The ``inverse`` preset of ``sdelab compare``: how far each conditional sampler lands from the
exact posterior.

On a Gaussian mixture the posterior given a linear observation is again a Gaussian mixture in
closed form (`sdelab.GaussianMixture.condition`), and the posterior of a component label is
that component (`sdelab.GaussianMixture.class_log_prob` is the exact classifier). So each
conditioning method of `sdelab.sample` (Song et al. 2021, Sec. 5 and App. I; RePaint, Lugmayr
et al. 2022; DPS, Chung et al. 2023) is scored against samples of the exact posterior:

* **observations** (seeded per dataset and seed): ``mask`` (a random half of the coordinates
  seen exactly, $y = x^\star_{\text{seen}}$ for a draw $x^\star \sim p_0$), ``linear``
  ($y = A x^\star + n$, $A$ random Gaussian with half as many rows as $d$, $n \sim
  \mathcal N(0, \varsigma^2 I)$), ``class`` (a random component label $k$);
* **methods**: ``imputation`` and ``repaint`` (`Inpaint`, for masks), ``dps`` and
  ``imputation`` (`LinearObservation`; DPS at each step size of ``dps_scales``, shown as
  ``dps(0.1)``), ``guidance`` (`ClassGuidance` with the exact
  classifier), and ``exact``: the posterior mixture's own exact score run through the same
  solver and steps (for an exact observation on the coordinates of the subspace $Ax = y$,
  `sdelab.analytic.PosteriorMixture`), the reference row, which carries only the solver's own
  discretisation error;
* **metrics**: the energy distance to ``n_samples`` exact posterior draws beside its noise
  floor (the mean of the same distance for `FLOOR_DRAWS` further exact draws), and the
  posterior mode-weight error (total variation between the posterior weights and the mean
  posterior mode responsibilities of the sample, `mode_weight_error`).

The summary gives, per (dataset, observation) and step count, each method's distance as a
multiple of the floor, and names the least biased method (the exact row excluded).
Results go to ``OUT/inverse.jsonl`` (rewritten by each run) and ``OUT/inverse.md``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor

from ..analytic import GaussianMixture, PosteriorMixture
from .config import build_sde, build_solver, builtin_mixture, solver_label
from .config.solvers import check_solver
from .metrics import energy_distance, mode_weight_error
from .report import _render

__all__ = [
    "FLOOR_DRAWS",
    "INVERSE_PRESETS",
    "InverseConfig",
    "InverseResult",
    "Observation",
    "inverse_summary",
    "observe",
    "run_inverse",
]

#: exact posterior draws of the noise floor (each scored against the same truth)
FLOOR_DRAWS = 4

#: the methods each observation kind admits
METHODS_FOR: dict[str, tuple[str, ...]] = {
    "mask": ("exact", "imputation", "repaint", "dps"),
    "linear": ("exact", "imputation", "dps"),
    "class": ("exact", "guidance"),
}


@dataclass
class InverseConfig:
    """The grid of the inverse-problem comparison (every method x solver x steps on every
    dataset x observation x seed)."""

    datasets: list[str] = field(default_factory=lambda: ["gmm2d", "gmm16"])
    sde: str = "vp"
    solvers: list = field(default_factory=lambda: ["euler_maruyama"])
    steps: list[int] = field(default_factory=lambda: [100, 1000])
    observations: list[str] = field(default_factory=lambda: ["mask", "linear", "class"])
    methods: list[str] = field(
        default_factory=lambda: ["exact", "imputation", "repaint", "dps", "guidance"]
    )
    n_samples: int = 1000
    seeds: list[int] = field(default_factory=lambda: [0])
    eps: float = 1e-3
    dtype: str = "float32"
    #: the share of coordinates a ``mask`` / ``linear`` observation sees
    fraction: float = 0.5
    #: $\varsigma$ of the ``linear`` observation
    noise_std: float = 0.1
    #: RePaint's resampling (Lugmayr et al. 2022)
    jump_length: int = 10
    jump_n_sample: int = 10
    #: DPS's step sizes $\zeta$ (one method row each: its bias depends on $\zeta$ times the
    #: number of steps, so one value cannot serve every budget) and the guidance weight
    dps_scales: list[float] = field(default_factory=lambda: [0.03, 0.1, 0.3])
    guidance_scale: float = 1.0
    name: str = "inverse"


INVERSE_PRESETS: dict[str, InverseConfig] = {
    "inverse": InverseConfig(
        solvers=["euler_maruyama", "reverse_diffusion"], steps=[100, 300, 1000]
    ),
    # --preset inverse --quick: the 2-D mixture, one solver, two step counts (seconds)
    "inverse-quick": InverseConfig(
        datasets=["gmm2d"],
        steps=[20, 100],
        n_samples=500,
        jump_length=5,
        jump_n_sample=3,
        dps_scales=[0.3],
    ),
}


@dataclass
class Observation:
    """One observation of a draw $x^\\star \\sim p_0$ and its exact posterior."""

    kind: str
    description: str
    posterior: PosteriorMixture
    A: Tensor | None = None  # (p, d)
    y: Tensor | None = None  # (p,)
    mask: Tensor | None = None  # (d,) bool
    noise_std: float = 0.0
    label: int | None = None


def observe(
    prior: GaussianMixture, kind: str, seed: int, *, fraction: float = 0.5, noise_std: float = 0.1
) -> Observation:
    r"""A seeded random observation of kind ``mask``, ``linear`` or ``class`` of one draw from
    ``prior`` (float64), with its exact posterior."""
    if kind not in METHODS_FOR:
        raise ValueError(f"kind must be one of {sorted(METHODS_FOR)}, got {kind!r}")
    g = torch.Generator().manual_seed(7919 * (seed + 1) + len(kind))
    d = prior.dim
    x_star, k_star = prior.sample(1, g, return_labels=True)
    x_star = x_star[0]
    p = max(1, min(d - 1, round(fraction * d))) if d > 1 else 1
    f64 = torch.float64
    if kind == "class":
        w = torch.zeros_like(prior.weights)
        w[k_star] = 1.0
        post = PosteriorMixture(
            **{**prior._moved(None, None), "weights": w}  # the component itself, weights 1-hot
        )
        k = int(k_star[0])
        return Observation(kind, f"class {k}", post, label=k)
    if kind == "mask":
        seen = torch.randperm(d, generator=g)[:p].sort().values
        mask = torch.zeros(d, dtype=torch.bool)
        mask[seen] = True
        A = torch.eye(d, dtype=f64)[mask]
        y = A @ x_star
        desc = f"mask ({p} of {d} seen)"
        return Observation(kind, desc, prior.condition(A, y), A=A, y=y, mask=mask)
    A = torch.randn(p, d, generator=g, dtype=f64) / math.sqrt(d)
    y = A @ x_star + noise_std * torch.randn(p, generator=g, dtype=f64)
    desc = f"linear ({p} x {d}, noise {noise_std:g})"
    post = prior.condition(A, y, noise_std)
    return Observation(kind, desc, post, A=A, y=y, noise_std=noise_std)


def _variants(cfg: InverseConfig) -> list[tuple[str, str, float]]:
    """``(label, method, scale)`` of each method row: DPS once per step size."""
    out = []
    for m in cfg.methods:
        if m == "dps":
            out += [(f"dps({s:g})", m, s) for s in cfg.dps_scales]
        else:
            out.append((m, m, cfg.guidance_scale if m == "guidance" else 1.0))
    return out


def _condition(
    method: str, scale: float, obs: Observation, prior: GaussianMixture, sde, cfg: InverseConfig
):
    """The ``condition=`` of `sdelab.sample` for ``method`` on ``obs`` (``None``: exact)."""
    from .. import conditioning as C

    dt = getattr(torch, cfg.dtype)
    if method == "exact":
        return None
    if method == "guidance":
        clf = prior.to(dtype=dt).class_log_prob(sde).for_class(obs.label)
        return C.ClassGuidance(clf, scale=scale)
    A, y = obs.A.to(dt), obs.y.to(dt)
    if method == "repaint" or (method == "imputation" and obs.kind == "mask"):
        full = torch.zeros(prior.dim, dtype=dt)
        full[obs.mask] = y
        return C.Inpaint(
            full,
            obs.mask,
            method=method,
            jump_length=cfg.jump_length,
            jump_n_sample=cfg.jump_n_sample,
        )
    return C.LinearObservation(A, y, noise_std=obs.noise_std, method=method, scale=scale)


def _energy_floor(truth: Tensor, post: PosteriorMixture, n: int, g) -> tuple[float, float]:
    vals = torch.stack(
        [energy_distance(post.sample_x(n, g).to(truth), truth) for _ in range(FLOOR_DRAWS)]
    ).double()
    return float(vals.mean()), float(vals.std())


@dataclass
class InverseResult:
    """What `run_inverse` returns: one record per cell, the summary text and the files."""

    records: list[dict]
    summary: str
    files: dict[str, Path]
    wall_s: float


def _cells(cfg: InverseConfig):
    for name in cfg.datasets:
        for kind in cfg.observations:
            for seed in cfg.seeds:
                for label, method, scale in _variants(cfg):
                    if method not in METHODS_FOR[kind]:
                        continue
                    for spec in cfg.solvers:
                        for steps in cfg.steps:
                            yield name, kind, seed, (label, method, scale), spec, steps


def run_inverse(
    config: InverseConfig | str = "inverse",
    out: str | Path = "sdelab-results",
    *,
    device: str | torch.device = "cpu",
    progress: bool = False,
    echo: bool = False,
) -> InverseResult:
    """Run the inverse-problem comparison (see the module docstring) and write
    ``OUT/inverse.jsonl`` (one record per cell) and ``OUT/inverse.md`` (the summary)."""
    from .. import sample

    t0 = time.perf_counter()
    cfg = INVERSE_PRESETS[config] if isinstance(config, str) else config
    solvers = [check_solver(s, f"solvers[{i}]") for i, s in enumerate(cfg.solvers)]
    cfg = replace(cfg, solvers=solvers)
    sde = build_sde({"kind": cfg.sde})
    dt = getattr(torch, cfg.dtype)
    problems: dict = {}
    records: list[dict] = []
    todo = list(_cells(cfg))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="sdelab compare (inverse)", unit="cell")
    for name, kind, seed, (label, method, scale), spec, steps in todo:
        key = (name, kind, seed)
        if key not in problems:
            prior = builtin_mixture(name)
            obs = observe(prior, kind, seed, fraction=cfg.fraction, noise_std=cfg.noise_std)
            g = torch.Generator().manual_seed(1_000_003 * (seed + 1))
            truth = obs.posterior.sample_x(cfg.n_samples, g).to(device=device, dtype=dt)
            floor = _energy_floor(truth, obs.posterior, cfg.n_samples, g)
            problems[key] = (prior, obs, truth, floor, obs.posterior.to(device=device, dtype=dt))
        prior, obs, truth, floor, post = problems[key]
        rec = {
            "dataset": name,
            "observation": obs.description,
            "kind": kind,
            "seed": seed,
            "method": label,
            "scale": scale,
            "solver": solver_label(spec),
            "spec": spec,
            "steps": steps,
            "energy_floor": floor[0],
            "energy_floor_sd": floor[1],
        }
        gen = torch.Generator(device=device).manual_seed(seed)
        t1 = time.perf_counter()
        try:
            if method == "exact":
                score, dim, cond = post.score(sde), post.dim, None
            else:
                dev_prior = prior.to(device=device, dtype=dt)
                score, dim = dev_prior.score(sde), prior.dim
                cond = _condition(method, scale, obs, prior, sde, cfg)
            kw = {} if cond is None else {"condition": cond}
            res = sample(
                sde,
                score,
                build_solver(spec),
                (cfg.n_samples, dim),
                steps=steps,
                eps=cfg.eps,
                generator=gen,
                device=device,
                dtype=dt,
                **kw,
            )
            x = post.embed(res.x) if method == "exact" else res.x
            rec["nfe"] = int(res.nfe)
            if bool(torch.isfinite(x).all()):
                rec["status"] = "ok"
                rec["energy"] = float(energy_distance(x, truth))
                rec["mode_tv"] = float(mode_weight_error(post.project(x), post))
            else:
                rec.update(status="diverged", energy=None, mode_tv=None)
        except (ArithmeticError, RuntimeError, ValueError, TypeError) as e:
            rec.update(status="error", error=f"{type(e).__name__}: {e}", energy=None, mode_tv=None)
            rec["nfe"] = None
        rec["wall_s"] = time.perf_counter() - t1
        records.append(rec)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"results": out / "inverse.jsonl", "summary": out / "inverse.md"}
    files["results"].write_text(
        "".join(json.dumps(r) + "\n" for r in records)
        if records
        else json.dumps({"config": asdict(cfg)}) + "\n"
    )
    summary = inverse_summary(records)
    files["summary"].write_text(inverse_summary(records, markdown=True) + "\n")
    if echo:
        print(summary)
    return InverseResult(records, summary, files, time.perf_counter() - t0)


def _mean(vals: list[float]) -> float:
    return sum(vals) / len(vals)


def inverse_summary(records: list[dict], *, markdown: bool = False) -> str:
    r"""Per (dataset, observation): a row per (solver, steps) with each method's energy
    distance to the exact posterior as a multiple of its floor (``1.0x`` is exact sampling at
    this sample size) and its mode-weight error, the least biased method of the row, and a
    line per step count naming the least biased method over the solvers."""
    blocks = []
    groups: dict = {}
    for r in records:
        groups.setdefault((r["dataset"], r["observation"]), []).append(r)
    for (dataset, observation), rs in groups.items():
        methods = list(dict.fromkeys(r["method"] for r in rs))
        rows = list(dict.fromkeys((r["solver"], r["steps"]) for r in rs))
        floor = _mean([r["energy_floor"] for r in rs])
        floor_sd = _mean([r["energy_floor_sd"] for r in rs])
        header = ["solver", "steps", *methods, "least biased"]
        body = []
        best_at: dict[int, tuple[float, str]] = {}
        for solver, steps in rows:
            line = [solver, str(steps)]
            scores = {}
            for m in methods:
                cell = [
                    r
                    for r in rs
                    if r["method"] == m and r["solver"] == solver and r["steps"] == steps
                ]
                ok = [r for r in cell if r["status"] == "ok"]
                if not cell:
                    line.append("")
                elif not ok:
                    line.append(cell[0]["status"])
                else:
                    e = _mean([r["energy"] for r in ok])
                    tv = _mean([r["mode_tv"] for r in ok])
                    nfe = _mean([r["nfe"] for r in ok])
                    line.append(f"{e / floor:.3g}x (tv {tv:.3f}, nfe {nfe:.0f})")
                    if m != "exact":
                        scores[m] = e
                        if steps not in best_at or e < best_at[steps][0]:
                            best_at[steps] = (e, f"{m} ({solver})")
            line.append(min(scores, key=scores.get) if scores else "-")
            body.append(line)
        title = f"{dataset} / {observation}: energy distance to the exact posterior / floor"
        text = _render(header, body, markdown)
        notes = [
            f"floor {floor:.3g} ± {floor_sd:.2g} (energy distance of {FLOOR_DRAWS} further "
            f"exact posterior draws to the truth: mean ± sd; 1x = exact sampling)"
        ]
        for steps in sorted(best_at):
            e, who = best_at[steps]
            notes.append(f"least biased at {steps} steps: {who}, {e / floor:.3g}x the floor")
        sep = "\n\n" if markdown else "\n"
        blocks.append((f"**{title}**" if markdown else title) + sep + text + sep + "\n".join(notes))
    return "\n\n".join(blocks)
