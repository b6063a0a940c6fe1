r"""Tables and plots of comparison results (the records written by `sdelab.experiments.run`).

`aggregate` averages repeated seeds (mean and standard deviation over seeds, which give the
error bars); `summary_table` picks the best solver per NFE budget; `results_table` lists every
configuration; `table1` prints the layout of Song et al. 2021, Table 1; `plot_error_vs_nfe`
and `plot_error_vs_time` draw the curves with the noise floor. matplotlib is imported inside
the plotting functions only.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .config import solver_label, solver_legend
from .metrics import METRICS
from .pathwise import PATHWISE

__all__ = [
    "Row",
    "aggregate",
    "at_floor",
    "flag_outliers",
    "legend",
    "pathwise_matrix",
    "pathwise_summary",
    "plot_error_vs_nfe",
    "plot_error_vs_time",
    "results_table",
    "score_share",
    "summary_table",
    "table1",
]

BUDGETS = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


@dataclass
class Row:
    """One configuration (dataset, SDE, solver, steps or tolerance) over its seeds."""

    dataset: str
    sde: str
    solver: str
    steps: int | None
    tol: float | None
    spec: dict
    seeds: list[int] = field(default_factory=list)
    nfe: float = math.nan
    wall_s: float = math.nan
    score_s: float = math.nan
    metrics: dict[str, tuple[float, float]] = field(default_factory=dict)  # mean, std
    # (``metrics["pathwise"]``: deterministic solvers only, no floor)
    floor: dict[str, float] = field(default_factory=dict)  # mean over seeds
    floor_sd: dict[str, float] = field(default_factory=dict)  # spread of one exact sample
    status: str = "ok"
    sde_kind: str = ""
    error: str = ""  # the first failed seed's error message
    flagged: bool = False  # an outlier among its peers (`flag_outliers`)

    @property
    def knob(self) -> str:
        """``steps=N`` or ``tol=T`` as a short string."""
        return f"tol {self.tol:g}" if self.tol is not None else f"{self.steps}"

    @property
    def name(self) -> str:
        """Solver and its knob, e.g. ``RD+L N=100`` (grid steps) or ``PF-ODE tol=0.001``
        (rtol = atol of an adaptive solver)."""
        knob = f"tol={self.tol:g}" if self.tol is not None else f"N={self.steps}"
        return f"{self.solver} {knob}"

    def se(self, metric: str) -> float:
        """Standard error of the mean ``metric`` over the row's seeds: the spread over seeds,
        but never below that of exact sampling (the floor's spread), so a single seed or a
        lucky agreement of three still carries the Monte-Carlo noise."""
        sd = self.metrics[metric][1]
        sd = max(sd if math.isfinite(sd) else 0.0, self.floor_sd.get(metric, 0.0) or 0.0)
        return sd / math.sqrt(max(len(self.seeds), 1))


def _mean_std(vals: list[float]) -> tuple[float, float]:
    if not vals:
        return math.nan, math.nan
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def aggregate(records: Sequence[dict]) -> list[Row]:
    """Group records by configuration and average over seeds, keeping first-seen order.

    A configuration whose seeds did not all finish (``status`` not ``ok``) gets that status
    and NaN metrics, so it is never reported as best.
    """
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        cfg = r["config"]
        k = (r["dataset"], r["sde"], r["solver"], r["steps"], r["tol"], repr(cfg["solver"]))
        groups.setdefault(k, []).append(r)
    rows = []
    for (ds, sde, sol, steps, tol, _), rs in groups.items():
        row = Row(ds, sde, sol, steps, tol, rs[0]["config"]["solver"])
        row.seeds = [r["seed"] for r in rs]
        row.sde_kind = rs[0]["config"]["sde"].get("kind", "")
        bad = [r for r in rs if r["status"] != "ok"]
        row.status = bad[0]["status"] if bad else "ok"
        row.error = bad[0].get("error") or "" if bad else ""
        names = list(rs[0]["floor"])
        ok = rs if not bad else []
        row.nfe = _mean_std([r["nfe"] for r in ok])[0]
        row.wall_s = _mean_std([r["wall_s"] for r in rs])[0]
        row.score_s = _mean_std([r["score_s"] for r in rs])[0]
        row.metrics = {m: _mean_std([r["metrics"][m] for r in ok]) for m in names}
        paths = [r.get(PATHWISE) for r in ok]
        if paths and all(v is not None for v in paths):
            row.metrics[PATHWISE] = _mean_std(paths)
        row.floor = {
            m: _mean_std([r["floor"][m] for r in rs if r["floor"][m] is not None])[0] for m in names
        }
        row.floor_sd = {
            m: _mean_std(
                [r["floor_sd"][m] for r in rs if r.get("floor_sd", {}).get(m) is not None]
            )[0]
            for m in names
        }
        rows.append(row)
    return rows


#: how far above its peers a configuration's error must be to be flagged (two orders of
#: magnitude)
OUTLIER_FACTOR = 100.0


def flag_outliers(rows: Sequence[Row], metric: str, factor: float = OUTLIER_FACTOR) -> list[Row]:
    r"""Mark (``row.flagged``) and return the configurations whose mean ``metric`` is more
    than ``factor`` times that of their peers: the other solvers on the same dataset and SDE
    at a comparable cost (mean NFE within a factor 2), compared with the median of the
    peers' errors, or the noise floor when that is larger. At least three peers are needed.

    Comparing across solvers at the same cost (rather than along one solver's steps, where
    a coarse grid is legitimately far worse than a fine one) catches finite garbage such as
    a method outside its stability region, which returns finite samples 100-1000 times off.
    Flagged configurations stay in ``results.md`` (marked ``!``), are never reported as
    best and are drawn as crosses, off the plot lines."""
    flagged = []
    ok = [
        r for r in rows if r.status == "ok" and math.isfinite(r.metrics.get(metric, (math.nan,))[0])
    ]
    for r in ok:
        peers = [
            abs(p.metrics[metric][0])
            for p in ok
            if p.dataset == r.dataset
            and p.sde == r.sde
            and p.solver != r.solver
            and r.nfe / 2 <= p.nfe <= 2 * r.nfe
        ]
        if len(peers) < 3:
            continue
        ref = max(statistics.median(peers), r.floor.get(metric, 0.0) or 0.0)
        if ref > 0 and abs(r.metrics[metric][0]) > factor * ref:
            r.flagged = True
            flagged.append(r)
    return flagged


def legend(rows: Sequence[Row], *, markdown: bool = False) -> str:
    """What each solver label in the tables means, generated from the solver configs
    (`sdelab.experiments.config.solver_legend`): the solver call and its knob."""
    head = "Solvers (N=: grid steps of a fixed-grid solver; tol=: rtol = atol of an adaptive one)"
    items = solver_legend(_unique_specs(rows))
    if markdown:
        lines = [f"- `{lab}` = `{call}` ({knob})" for lab, call, knob in items]
        return f"**{head}**\n\n" + "\n".join(lines)
    width = max(len(lab) for lab, _, _ in items)
    lines = [f"  {lab:<{width}} = {call} ({knob})" for lab, call, knob in items]
    return head + "\n" + "\n".join(lines)


def _unique_specs(rows: Sequence[Row]) -> list[dict]:
    seen, out = set(), []
    for r in rows:
        if r.solver not in seen:
            seen.add(r.solver)
            out.append(r.spec)
    return out


def score_share(records: Sequence[dict]) -> tuple[float, float]:
    """(total sampling wall time in s, share of it spent inside the score function)."""
    wall = sum(r["wall_s"] for r in records)
    return wall, (sum(r["score_s"] for r in records) / wall if wall > 0 else math.nan)


def _fmt(v: float, sd: float | None = None) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    s = f"{v:.3g}"
    if sd is not None and sd > 0:
        s += f" ± {sd:.2g}"
    return s


def _render(header: list[str], body: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), "  ".join("-" * w for w in widths)]
    lines += [fmt.format(*r) for r in body]
    return "\n".join(lines)


def _unique(seq):
    return list(dict.fromkeys(seq))


def at_floor(row: Row, metric: str) -> bool:
    """Whether ``row``'s mean ``metric`` lies inside the noise-floor band: below the floor
    plus 2 standard deviations of a mean over as many exact samples as ``row`` has seeds
    (indistinguishable from exact sampling at this sample size)."""
    m, f = row.metrics[metric][0], row.floor.get(metric, math.nan)
    sd = row.floor_sd.get(metric, 0.0) / math.sqrt(max(len(row.seeds), 1))
    return math.isfinite(m) and math.isfinite(f) and abs(m) <= f + 2 * sd


def _tied(cand: Sequence[Row], best: Row, metric: str, k: float = 2.0) -> list[Row]:
    r"""The candidates that cannot be told apart from ``best``: mean within ``k`` standard
    errors of the difference, $\bar e_i - \bar e_{best} \le k \sqrt{SE_i^2 + SE_{best}^2}$."""
    m0, s0 = best.metrics[metric][0], best.se(metric)
    return [r for r in cand if r.metrics[metric][0] - m0 <= k * math.hypot(r.se(metric), s0)]


def summary_table(
    rows: Sequence[Row],
    metric: str = "sw2",
    *,
    markdown: bool = False,
    budgets: Sequence[int] = BUDGETS,
) -> str:
    r"""Best solver per NFE budget: for each dataset a table whose rows are budgets and whose
    columns are SDEs.

    The lowest mean ``metric`` among ~30 noisy configurations sits below its own expectation
    (the minimum of noisy values is biased low, more so the more candidates there are). So
    an entry is not that minimum: among the configurations whose mean NFE is at most the
    budget, those within 2 standard errors (`Row.se`) of the lowest mean cannot be told
    apart from it, and the entry is the **cheapest** of them (fewest NFE) whose standard
    error is at most twice that of the lowest mean (a configuration whose seeds scatter
    widely is tied with anything and says nothing), e.g.
    ``RD+L N=50 0.081 ± 0.004 (=3)``: its mean over seeds ± its standard error, and how many
    configurations are tied with the lowest mean (``=1``: a clear winner). An entry marked
    ``*`` is inside the noise-floor band (`at_floor`). A last row gives the cheapest
    configuration inside the band. Failed (``error``/``diverged``) and flagged
    (`flag_outliers`) configurations are never entries; their count is given below the
    table. The noise floor is in each dataset's heading.

    A metric without a noise floor (``pathwise``, see `pathwise_summary`) ranks only the rows
    that have it, with neither marks nor the last row."""
    out = []
    for ds in _unique(r.dataset for r in rows if metric in r.metrics):
        mine = [r for r in rows if r.dataset == ds and metric in r.metrics]
        rs = [r for r in mine if r.status == "ok" and not r.flagged]
        sdes = _unique(r.sde for r in mine)
        has_floor = any(math.isfinite(r.floor.get(metric, math.nan)) for r in rs)
        floor = _fmt(statistics.fmean(r.floor.get(metric, math.nan) for r in rs)) if rs else "-"
        what = (f"* = at the noise floor {floor}") if has_floor else "no noise floor"
        title = (
            f"{ds}: {metric} per NFE budget, the cheapest configuration tied with the lowest "
            f"mean (mean ± standard error; =k: k tied within 2 SE; {what})"
        )
        body = []
        max_nfe = max((r.nfe for r in rs), default=0)
        for b in budgets:
            if b > 2 * max_nfe and body:
                break
            line = [f"<= {b}"]
            for sde in sdes:
                cand = [
                    r
                    for r in rs
                    if r.sde == sde and r.nfe <= b and math.isfinite(r.metrics[metric][0])
                ]
                if not cand:
                    line.append("-")
                    continue
                best = min(cand, key=lambda r: r.metrics[metric][0])
                tied = _tied(cand, best, metric)
                # seeds that scatter widely make a configuration "tied" with anything: only
                # those measured about as precisely as the lowest mean are chosen
                sharp = [r for r in tied if r.se(metric) <= 2 * best.se(metric)]
                pick = min(sharp, key=lambda r: (r.nfe, r.metrics[metric][0]))
                mark = "*" if at_floor(pick, metric) else ""
                line.append(
                    f"{pick.name} {_fmt(pick.metrics[metric][0], pick.se(metric))}{mark} "
                    f"(={len(tied)})"
                )
            body.append(line)
        if has_floor:
            line = ["floor reached"]
            for sde in sdes:
                ok = [r for r in rs if r.sde == sde and at_floor(r, metric)]
                cheapest = min(ok, key=lambda r: r.nfe, default=None)
                line.append(
                    f"{cheapest.name} (NFE {cheapest.nfe:.0f})" if cheapest else "not reached"
                )
            body.append(line)
        table = _render(["NFE", *sdes], body, markdown)
        notes = []
        failed = [r for r in mine if r.status != "ok"]
        flagged = [r for r in mine if r.flagged]
        if failed:
            notes.append(f"{len(failed)} configuration(s) failed (see results.md)")
        if flagged:
            notes.append(
                f"{len(flagged)} flagged as outliers, over {OUTLIER_FACTOR:g}x their peers "
                f"(see results.md): "
                + ", ".join(f"{r.sde} {r.name}" for r in flagged[:6])
                + (", ..." if len(flagged) > 6 else "")
            )
        note = ("\n\n" if markdown else "\n") + "; ".join(notes) if notes else ""
        out.append((f"**{title}**\n\n" if markdown else f"{title}\n") + table + note)
    return "\n\n".join(out)


def pathwise_summary(
    rows: Sequence[Row], *, markdown: bool = False, budgets: Sequence[int] = BUDGETS
) -> str:
    """`summary_table` ranked by the pathwise error (`sdelab.experiments.pathwise`) of the
    deterministic solvers, with the same tie-aware choice; empty when no row has one."""
    if not any(PATHWISE in r.metrics for r in rows):
        return ""
    head = (
        "Deterministic solvers by their pathwise error: RMS distance of each sample to the "
        "exact probability-flow map of the same x_T (no Monte-Carlo floor)"
    )
    body = summary_table(rows, PATHWISE, markdown=markdown, budgets=budgets)
    matrix = pathwise_matrix(rows, markdown=markdown, budgets=budgets)
    return (f"**{head}**" if markdown else head) + "\n\n" + body + "\n\n" + matrix


def pathwise_matrix(
    rows: Sequence[Row], *, markdown: bool = False, budgets: Sequence[int] = BUDGETS
) -> str:
    """The pathwise error of every deterministic fixed-grid solver at every NFE budget: one
    table per (dataset, SDE), one line per solver, each entry the mean over seeds of its
    configuration with the most NFE within the budget (``-``: none fits; ``!``: flagged as
    an outlier by the grid's metric). The lowest entry of each budget is marked ``*`` (bold
    in markdown)."""
    out = []
    fixed = [r for r in rows if PATHWISE in r.metrics and r.tol is None and r.status == "ok"]
    for ds in _unique(r.dataset for r in fixed):
        for sde in _unique(r.sde for r in fixed if r.dataset == ds):
            rs = [r for r in fixed if r.dataset == ds and r.sde == sde]
            shown = [b for b in budgets if any(r.nfe <= b for r in rs)]
            cols: dict[str, list[Row | None]] = {}
            for sol in _unique(r.solver for r in rs):
                mine = [r for r in rs if r.solver == sol]
                cols[sol] = [
                    max((r for r in mine if r.nfe <= b), key=lambda r: r.nfe, default=None)
                    for b in shown
                ]
            best = [
                min(
                    (c[j].metrics[PATHWISE][0] for c in cols.values() if c[j] and not c[j].flagged),
                    default=math.nan,
                )
                for j in range(len(shown))
            ]
            body = []
            for sol, picks in cols.items():
                line = [sol]
                for j, r in enumerate(picks):
                    if r is None:
                        line.append("-")
                        continue
                    v = _fmt(r.metrics[PATHWISE][0]) + (" !" if r.flagged else "")
                    if r.metrics[PATHWISE][0] == best[j] and not r.flagged:
                        v = f"**{v}**" if markdown else f"{v}*"
                    line.append(v)
                body.append(line)
            title = (
                f"{ds} / {sde}: pathwise error per NFE budget (mean over seeds; "
                f"{'bold' if markdown else '*'}: the lowest)"
            )
            table = _render(["solver", *(f"<= {b}" for b in shown)], body, markdown)
            out.append((f"**{title}**\n\n" if markdown else f"{title}\n") + table)
    return "\n\n".join(out)


#: shown for a configuration without a pathwise error (a stochastic solver)
NO_PATHWISE = "—"


def results_table(rows: Sequence[Row], *, markdown: bool = False) -> str:
    """Every configuration: one table per (dataset, SDE) with NFE, the pathwise error (when
    some configuration has one; ``—`` for stochastic solvers), each metric (mean ± std over
    seeds), wall time and a first line holding the noise floor (0 for the pathwise error)."""
    out = []
    for ds in _unique(r.dataset for r in rows):
        for sde in _unique(r.sde for r in rows if r.dataset == ds):
            rs = [r for r in rows if r.dataset == ds and r.sde == sde]
            names = [m for m in METRICS if m in rs[0].floor]
            path = [PATHWISE] if any(PATHWISE in r.metrics for r in rs) else []
            header = ["solver", "steps/tol", "NFE", *path, *names, "wall s", "score %"]
            floor = [
                "noise floor",
                "",
                "",
                *("0" for _ in path),
                *(_fmt(rs[0].floor[m], rs[0].floor_sd.get(m)) for m in names),
                "",
                "",
            ]
            body = [floor]
            for r in rs:
                share = 100 * r.score_s / r.wall_s if r.wall_s > 0 else math.nan
                vals = [
                    (_fmt(*r.metrics[m]) if m in r.metrics else NO_PATHWISE)
                    if r.status == "ok"
                    else r.status
                    for m in [*path, *names]
                ]
                if r.flagged:
                    vals = [v + " !" for v in vals]
                nfe = f"{r.nfe:.0f}" if math.isfinite(r.nfe) else "-"
                body.append([r.solver, r.knob, nfe, *vals, f"{r.wall_s:.3g}", f"{share:.0f}"])
            title = f"{ds} / {sde}"
            notes = [f"{r.name}: {r.status}: {r.error}" for r in rs if r.status != "ok"]
            notes += [
                f"{r.name}: ! flagged, over {OUTLIER_FACTOR:g}x its peers at this NFE"
                for r in rs
                if r.flagged
            ]
            sep = "\n\n" if markdown else "\n"
            note = sep + (sep.join(notes) if not markdown else "\n".join(f"- {n}" for n in notes))
            out.append(
                (f"**{title}**\n\n" if markdown else f"{title}\n")
                + _render(header, body, markdown)
                + (note if notes else "")
            )
    return "\n\n".join(out)


# --- Table 1 --------------------------------------------------------------------------------

_T1_ROWS = {
    "ancestral": "ancestral sampling",
    "reverse_diffusion": "reverse diffusion",
    "euler_maruyama": "Euler-Maruyama",
}
_T1_GROUPS = ("ve", "vp", "subvp")  # the paper's order: VE (SMLD), then VP (DDPM)


def _t1_slot(spec: dict, steps: int | None) -> tuple[str | None, str] | None:
    """(row, column) of a configuration in the Table-1 layout, or None if it has no place."""
    if steps is None:
        return None
    kind = spec["kind"]
    if kind in ("langevin", "annealed_langevin"):
        return None, f"C{steps}"
    pred, col = spec, f"P{steps}"
    if kind == "pc":
        pred, col = spec["predictor"], f"PC{steps}"
    if pred["kind"] not in _T1_ROWS:
        return None
    row = "probability flow" if pred.get("probability_flow") else _T1_ROWS[pred["kind"]]
    if pred.get("probability_flow") and pred["kind"] != "reverse_diffusion":
        row += f" ({solver_label(pred)})"
    return row, col


def _col_order(c: str) -> tuple:
    kind = c.rstrip("0123456789")
    return ({"P": 0, "C": 1, "PC": 2}.get(kind, 3), int(c[len(kind) :]))


def table1(records: Sequence[dict], metric: str = "sw2", *, markdown: bool = False) -> str:
    """Results in the layout of Song et al. 2021, Table 1: rows are predictors (ancestral
    sampling, reverse diffusion, probability flow), columns P1000, P2000, C2000, PC1000 for
    VE and then VP, entries the mean ``metric`` ± its standard deviation over seeds (in
    place of FID). C2000 uses no predictor, so it is given once, on the first row."""
    rows = aggregate(records)
    groups = {}
    for r in rows:
        slot = _t1_slot(r.spec, r.steps)
        if slot is not None:
            groups.setdefault((r.dataset, r.sde, r.sde_kind), {})[slot] = r
    out = []
    for ds in _unique(k[0] for k in groups):
        keys = [k for k in groups if k[0] == ds]
        keys.sort(key=lambda k: _T1_GROUPS.index(k[2]) if k[2] in _T1_GROUPS else 9)
        cols = {k: sorted({c for _, c in groups[k]}, key=_col_order) for k in keys}
        pred_rows = _unique(row for k in keys for (row, _) in groups[k] if row is not None)
        header = ["Predictor"] + [f"{k[1]} {c}" for k in keys for c in cols[k]]
        body = []
        for i, pr in enumerate(pred_rows):
            line = [pr]
            for k in keys:
                for c in cols[k]:
                    slot = (None if c.startswith("C") else pr, c)
                    r = groups[k].get(slot)
                    if r is None or (c.startswith("C") and i > 0):
                        line.append("")
                    elif r.status != "ok":
                        line.append(r.status)
                    else:
                        line.append(_fmt(*r.metrics[metric]))
            body.append(line)
        floor = statistics.fmean(r.floor[metric] for k in keys for r in groups[k].values())
        seeds = max(len(r.seeds) for k in keys for r in groups[k].values())
        title = (
            f"{ds}: {metric} to the truth in place of FID, mean ± std over {seeds} seed(s); "
            f"noise floor {_fmt(floor)}"
        )
        out.append(
            (f"**{title}**\n\n" if markdown else f"{title}\n") + _render(header, body, markdown)
        )
    return "\n\n".join(out)


# --- plots ----------------------------------------------------------------------------------


def _plot(rows: Sequence[Row], metric: str, x: str, path, title: str):
    from matplotlib.figure import Figure

    datasets = _unique(r.dataset for r in rows)
    sdes = _unique(r.sde for r in rows)
    solvers = _unique(r.solver for r in rows)
    from matplotlib import colormaps
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    # fixed margins in inches instead of tight_layout, few minor ticks on the log axes and
    # plain tick labels (no mathtext): those were about 80% of the plotting time
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    w, h = 4.2 * len(sdes) + 1.8, 3.4 * len(datasets)
    fig = Figure(figsize=(w, h), dpi=90)
    fig.subplots_adjust(
        left=0.75 / w, right=1 - 1.9 / w, bottom=0.55 / h, top=1 - 0.6 / h, wspace=0.22, hspace=0.4
    )
    axes = fig.subplots(len(datasets), len(sdes), squeeze=False)

    cmap = colormaps["tab10" if len(solvers) <= 10 else "tab20"]
    markers = "os^vD<>ph*"
    for i, ds in enumerate(datasets):
        for j, sde in enumerate(sdes):
            ax = axes[i][j]
            cell = [r for r in rows if r.dataset == ds and r.sde == sde]
            ymax = 0.0
            for s_idx, sol in enumerate(solvers):
                rs = [
                    r
                    for r in cell
                    if r.solver == sol and r.status == "ok" and math.isfinite(r.metrics[metric][0])
                ]
                bad = [r for r in rs if r.flagged]
                if bad:  # outliers: crosses off the line, not results
                    ax.plot(
                        [r.nfe if x == "nfe" else r.wall_s for r in bad],
                        [abs(r.metrics[metric][0]) for r in bad],
                        linestyle="none",
                        marker="x",
                        color="red",
                        markersize=6,
                        label=f"flagged (> {OUTLIER_FACTOR:g}x peers)",
                    )
                rs = [r for r in rs if not r.flagged]
                if not rs:
                    continue
                rs.sort(key=lambda r: r.nfe if x == "nfe" else r.wall_s)
                xs = [r.nfe if x == "nfe" else r.wall_s for r in rs]
                ys = [abs(r.metrics[metric][0]) for r in rs]
                # error bars: standard error of the mean over the row's seeds
                es = [r.metrics[metric][1] / math.sqrt(len(r.seeds)) for r in rs]
                ymax = max(ymax, *(y + e for y, e in zip(ys, es, strict=True)))
                adaptive = rs[0].tol is not None
                ax.errorbar(
                    xs,
                    ys,
                    yerr=es if any(es) else None,
                    color=cmap(s_idx % cmap.N),
                    marker=markers[s_idx % len(markers)],
                    markersize=4,
                    linestyle="--" if adaptive else "-",
                    linewidth=1.2,
                    capsize=2,
                    label=sol,
                )
            fl = [r for r in cell if math.isfinite(r.floor.get(metric, math.nan))]
            if fl:
                f = statistics.fmean(r.floor[metric] for r in fl)
                # the band is for a mean over the row's seeds: sd of one draw / sqrt(seeds)
                k = max(len(r.seeds) for r in fl)
                sd = statistics.fmean(r.floor_sd.get(metric, 0.0) for r in fl) / math.sqrt(k)
                ax.axhline(f, color="k", linestyle=":", linewidth=1.5, label="noise floor")
                if sd > 0:
                    ax.axhspan(
                        max(f - 2 * sd, f / 10),
                        f + 2 * sd,
                        color="k",
                        alpha=0.08,
                        lw=0,
                        label="floor ± 2 sd",
                    )
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.xaxis.set_minor_locator(NullLocator())
            ax.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
            for axis in (ax.xaxis, ax.yaxis):
                axis.set_major_formatter(plain)
            ax.yaxis.set_minor_formatter(plain)
            if fl:  # focus on errors up to 20x the floor; worse curves leave through the top
                ax.set_ylim(min(0.5 * f, ax.get_ylim()[0]), min(1.3 * max(ymax, f), 20 * f))
            ax.grid(True, which="major", alpha=0.3)
            ax.set_title(f"{ds} / {sde}", fontsize=10)
            if i == len(datasets) - 1:
                ax.set_xlabel("score evaluations (NFE)" if x == "nfe" else "wall time (s)")
            if j == 0:
                ax.set_ylabel(metric + (" (|gap|)" if metric == "logp_gap" else ""))
    handles, labels = {}, []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    fig.legend([handles[lab] for lab in labels], labels, loc="center right", fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.savefig(path)
    return fig


def plot_error_vs_nfe(rows: Sequence[Row], path: str | Path, metric: str = "sw2"):
    """Error (``metric``, mean over seeds, error bars one standard error of that mean)
    against NFE, one panel per (dataset, SDE), one line per solver (dashed: adaptive), the
    noise floor dotted with a shaded band of ± 2 standard deviations of a mean over as many
    exact samples as there are seeds. The y-axis stops at 20 times the floor. Saves a PNG to
    ``path`` and returns the matplotlib ``Figure``."""
    return _plot(rows, metric, "nfe", path, f"{metric} vs score evaluations")


def plot_error_vs_time(rows: Sequence[Row], path: str | Path, metric: str = "sw2"):
    """Like `plot_error_vs_nfe` against sampling wall time."""
    return _plot(rows, metric, "wall", path, f"{metric} vs wall time")
