"""The findings of Du et al. (ACL 2025) checked on our own runs: numbers, seed spread and a verdict each.

Every function here is pure: it reads a grid's selections (``(representation, algorithm, budget, seed) ->
indices``, as :func:`datadiet.analysis.grid.summary` takes them), the training labels and a study's long
results table, and returns :class:`Finding` records. The verdict rules are stated in each ``rule`` text, so
the document that prints them says how they were decided:

- overlaps are symmetric means ``(|A ∩ B| / |A| + |B ∩ A| / |B|) / 2`` per seed, then mean ± std over seeds;
- "near random" means within :data:`NEAR_RANDOM` of the expectation ``k/N``;
- a performance claim is "reliable" only with at least 5 paired seeds and a 95% paired t interval that
  excludes zero (:func:`datadiet.analysis.stats.paired_difference`); with fewer seeds it is "not shown".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, cast

import numpy as np
import pandas as pd

from datadiet.analysis.grid import Key, grid_label, summary
from datadiet.analysis.overlap import label_distribution, random_overlap_expectation
from datadiet.analysis.stats import MIN_SEEDS_FOR_FLAG

Verdict = str
Selections = Mapping[Key, Any]
"""``(representation, algorithm, budget, seed) -> selected indices``."""
NEAR_RANDOM = 0.05
"""How far from ``k/N`` an overlap may be and still count as "near random" (absolute)."""
BALANCED_TOLERANCE = 0.01
"""How far the majority class's share in a balanced selection may be from its share of the full set."""
OVER_SELECTION = 0.05
"""How much more than its full-set share the majority class must take to count as over-selected."""
WEAK_RHO = 0.2
"""The weakest rank correlation read as a (partial) agreement of two main models' verdicts."""
DIVERSITY = ("semdedup", "s2l", "ccs")
"""The selectors whose objective is diversity / coverage of the data."""
SCORE_BASED = ("hard_to_learn", "el2n", "less", "self_influence", "forgetting", "ambiguous")
"""Score-based selectors a study compares with random at high compression."""
PAPER_CAD = {
    ("prototypicality@gradients", "s2l@gradients"): 0.46,
    ("prototypicality@gradients", "less@gradients"): 0.79,
    ("prototypicality@gradients", "prototypicality@hidden"): 0.26,
    ("prototypicality@gradients", "prototypicality@loss"): 0.75,
}
"""Overlaps the paper reports on CAD (its Figure 2b), as quoted in our issue tracker."""


@dataclass(frozen=True)
class Finding:
    """One finding of the paper, with our numbers and verdict."""

    key: str
    claim: str
    """The paper's finding, in one sentence."""
    ours: str
    """Our numbers (mean ± std over seeds, with k/N where it applies)."""
    verdict: Verdict
    """``holds``, ``partly``, ``fails``, ``not shown`` (too few seeds) or ``not measured``."""
    rule: str
    """How the verdict was decided."""
    paper: str = ""
    """The paper's own number, where we have one."""
    table: pd.DataFrame | None = field(default=None, compare=False)
    """The numbers behind it, for the document."""


@dataclass(frozen=True)
class GridSelections:
    """A grid's selections over ``n_examples`` examples."""

    selections: Selections
    n_examples: int

    @property
    def budgets(self) -> list[Any]:
        return list(dict.fromkeys(b for _, _, b, _ in self.selections))

    def k(self, budget: Any) -> int:
        sizes = {len(v) for (_, _, b, _), v in self.selections.items() if b == budget}
        return sizes.pop() if len(sizes) == 1 else -1

    def chance(self, budget: Any) -> float:
        return random_overlap_expectation(self.k(budget), self.n_examples)

    def has(self, rep: str, algorithm: str, budget: Any) -> bool:
        return any(k[:3] == (rep, algorithm, budget) for k in self.selections)

    def pair(self, a: tuple[str, str], b: tuple[str, str], budget: Any) -> tuple[float, float, int]:
        """Symmetric overlap of ``a = (rep, algorithm)`` and ``b`` at ``budget``: mean, std, n seeds."""
        seeds = sorted(s for r, al, bu, s in self.selections if (r, al, bu) == (*a, budget))
        values = []
        for seed in seeds:
            other = self.selections.get((*b, budget, seed))
            if other is not None:
                values.append(symmetric_overlap(self.selections[(*a, budget, seed)], other))
        return _spread(values)


def symmetric_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """``(|A ∩ B| / |A| + |A ∩ B| / |B|) / 2``.

    >>> symmetric_overlap(np.array([0, 1, 2, 3]), np.array([2, 3]))
    0.75
    """
    common = len(np.intersect1d(a, b))
    return float((common / len(a) + common / len(b)) / 2)


def _spread(values: Sequence[float]) -> tuple[float, float, int]:
    if not values:
        return float("nan"), float("nan"), 0
    std = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
    return float(np.mean(values)), std, len(values)


def _fmt(mean: float, std: float, n: int) -> str:
    if n == 0 or np.isnan(mean):
        return "n/a"
    return f"{mean:.2f}" + ("" if np.isnan(std) else f" ± {std:.2f}") + f" ({n} seeds)"


def family(representation: str) -> str:
    """``gradients``, ``loss``, ``hidden``, ``dynamics`` (other trajectories) or the name itself.

    >>> family("gradients/train:flatten"), family("dynamics/loss"), family("hidden/final")
    ('gradients', 'loss', 'hidden')
    """
    base = representation.partition(":")[0]
    if base.startswith("gradients/"):
        return "gradients"
    if base == "dynamics/loss":
        return "loss"
    if base.startswith("hidden/"):
        return "hidden"
    return "dynamics" if base.startswith("dynamics/") else base


def _by_seed(grid: GridSelections) -> dict[int, dict[Key, Any]]:
    out: dict[int, dict[Key, Any]] = {}
    for key, value in grid.selections.items():
        out.setdefault(int(key[3]), {})[key] = value
    return out


# --- overlap findings ---------------------------------------------------------------------------------
def same_representation_vs_algorithm(grid: GridSelections) -> Finding:
    """Same-representation pairs overlap more than same-algorithm pairs, at every budget."""
    rows = []
    per_seed = {s: summary(sels, n_examples=grid.n_examples) for s, sels in _by_seed(grid).items()}
    for budget in grid.budgets:
        values: dict[str, list[float]] = {"same_representation": [], "same_algorithm": []}
        for table in per_seed.values():
            for measure in values:
                found = _records(table, budget=budget, measure=measure)
                if found and np.isfinite(found[0]["value"]):
                    values[measure].append(float(found[0]["value"]))
        rep, algo = _spread(values["same_representation"]), _spread(values["same_algorithm"])
        rows.append({"budget": budget, "k/N": grid.chance(budget), "same representation": rep[0],
                     "sd (rep)": rep[1], "same algorithm": algo[0], "sd (algo)": algo[1],
                     "seeds": rep[2], "holds": rep[0] > algo[0]})  # fmt: skip
    table = pd.DataFrame(rows)
    n_hold = int(table["holds"].sum()) if len(table) else 0
    verdict = _share_verdict(n_hold, len(table))
    ours = "; ".join(
        f"{_pct(r['budget'])}: {r['same representation']:.2f} vs {r['same algorithm']:.2f} "
        f"(k/N {r['k/N']:.2f})"
        for r in rows
    )
    return Finding(
        "same_rep_vs_same_algo",
        "Selections on the same representation (different algorithms) overlap more than selections of the "
        "same algorithm on different representations.",
        ours,
        verdict,
        "holds: same-representation mean overlap > same-algorithm mean overlap at every budget (means over "
        "seeds of the per-seed summary); partly: at some budgets.",
        table=table,
    )


def diversity_varies_least(grid: GridSelections, budget: Any) -> Finding:
    """The diversity selectors change least when the representation changes."""
    table = summary(dict(grid.selections), n_examples=grid.n_examples)
    found = _records(table, budget=budget, measure="cross_representation_variation")
    found = sorted((r for r in found if np.isfinite(r["value"])), key=lambda r: r["value"])
    rows = pd.DataFrame(
        [{"algorithm": r["algorithm"], "variation": r["value"], "random (1 - k/N)": r["random"],
          "pairs": r["n_pairs"]} for r in found],
        columns=["algorithm", "variation", "random (1 - k/N)", "pairs"],
    )  # fmt: skip
    if rows.empty:
        return Finding("diversity_least", _DIVERSITY_CLAIM, "no algorithm ran on two representations",
                       "not measured", _DIVERSITY_RULE, table=rows)  # fmt: skip
    order = [str(r["algorithm"]) for r in found]
    least = order[0]
    diverse = [a for a in order if a in DIVERSITY]
    if not diverse:
        verdict = "not measured"
    elif least in DIVERSITY:
        verdict = "holds"
    else:
        rank = order.index(diverse[0]) + 1
        verdict = "partly" if rank <= 2 else "fails"
    ours = ", ".join(f"{r['algorithm']} {r['value']:.2f}" for r in found) + f" (at {_pct(budget)})"
    return Finding("diversity_least", _DIVERSITY_CLAIM, ours, verdict, _DIVERSITY_RULE, table=rows)


_DIVERSITY_CLAIM = "Diversity-based selection (SemDeDup, S2L, CCS) varies least across representations."
_DIVERSITY_RULE = (
    "variation = 1 - mean overlap of an algorithm's selections over pairs of representations (seed mean); "
    "holds: a diversity selector has the lowest variation; partly: it is second; fails: lower ranked."
)


def gradients_agree_with_loss(grid: GridSelections, budget: Any) -> Finding:
    """Gradient- and loss-based selections agree more with each other than either with hidden states."""
    pairs = {"gradients-loss": [], "gradients-hidden": [], "loss-hidden": []}
    algorithms = dict.fromkeys(a for _, a, _, _ in grid.selections)
    for algorithm in algorithms:
        reps = dict.fromkeys(r for r, a, b, _ in grid.selections if a == algorithm and b == budget)
        by_family: dict[str, list[str]] = {}
        for rep in reps:
            by_family.setdefault(family(rep), []).append(rep)
        for name in pairs:
            left, right = name.split("-")
            for ra in by_family.get(left, []):
                for rb in by_family.get(right, []):
                    mean, _, n = grid.pair((ra, algorithm), (rb, algorithm), budget)
                    if n:
                        pairs[name].append(mean)
    stats = {name: _spread(values) for name, values in pairs.items()}
    table = pd.DataFrame(
        [
            {"pair": name, "mean overlap": m, "sd over pairs": s, "pairs": n}
            for name, (m, s, n) in stats.items()
        ]
    )
    gl, gh, lh = (stats[n][0] for n in ("gradients-loss", "gradients-hidden", "loss-hidden"))
    if any(np.isnan(v) for v in (gl, gh, lh)):
        verdict = "not measured"
    else:
        verdict = "holds" if gl > max(gh, lh) else ("partly" if gl > min(gh, lh) else "fails")
    ours = f"∇-ℓ {gl:.2f}, ∇-h {gh:.2f}, ℓ-h {lh:.2f} (k/N {grid.chance(budget):.2f}, at {_pct(budget)})"
    return Finding(
        "gradients_loss_agree",
        "Gradient- and loss-based representations select more alike than either does with hidden states.",
        ours,
        verdict,
        "mean over algorithms (that ran on both) of the same-algorithm overlap between the two families; "
        "holds: ∇-ℓ exceeds both ∇-h and ℓ-h; partly: exceeds one.",
        table=table,
    )


def proto_hidden_vs_hard_loss(grid: GridSelections, budget: Any) -> Finding:
    """Hidden-state prototypicality and trajectory-based hard-to-learn select almost independently."""
    a = _first(grid, budget, "prototypicality", ("hidden/final", "hidden/early", "hidden/pretrained"))
    b = _first(grid, budget, "hard_to_learn", ("dynamics/prob",))
    chance = grid.chance(budget)
    claim = "Prototypicality on hidden states and hard-to-learn on training dynamics overlap about as random."
    rule = f"holds: |overlap - k/N| <= {NEAR_RANDOM}."
    if a is None or b is None:
        return Finding("proto_h_vs_hard_l", claim, "not in the grid", "not measured", rule)
    mean, std, n = grid.pair(a, b, budget)
    verdict = "holds" if abs(mean - chance) <= NEAR_RANDOM else "fails"
    ours = f"{grid_label(a[0], a[1])} vs {grid_label(b[0], b[1])}: {_fmt(mean, std, n)}, k/N {chance:.2f}"
    return Finding("proto_h_vs_hard_l", claim, ours, verdict, rule + f" At {_pct(budget)}.")


def paper_pairs(grid: GridSelections, budget: Any, gradient_name: str) -> Finding:
    """The paper's CAD overlaps beside ours (∇-proto against ∇-s2l, ∇-less, h-proto, ℓ-proto)."""
    names = {"gradients": gradient_name, "hidden": "hidden/final", "loss": "dynamics/loss"}
    grad_plain = gradient_name.partition(":")[0]
    rows = []
    for (left, right), paper in PAPER_CAD.items():
        la, lf = left.split("@")
        ra, rf = right.split("@")
        lrep, rrep = names[lf], names[rf]
        if ra == "less" and rf == "gradients":
            rrep = grad_plain  # LESS reads the stack itself
        mean, std, n = grid.pair((lrep, la), (rrep, ra), budget)
        rows.append({"pair": f"{la}@{lrep} vs {ra}@{rrep}", "paper (CAD)": paper, "ours": mean, "sd": std,
                     "seeds": n})  # fmt: skip
    table = pd.DataFrame(rows)
    ours = "; ".join(f"{r['pair']}: {r['ours']:.2f}" for r in rows)
    order_paper = [r["paper (CAD)"] for r in rows]
    order_ours = [r["ours"] for r in rows]
    if any(np.isnan(order_ours)):
        verdict = "not measured"
    else:
        agree = _same_order(order_paper, order_ours)
        verdict = "holds" if agree == 1.0 else ("partly" if agree >= 0.5 else "fails")
    return Finding(
        "paper_pairs",
        "On CAD the paper reports ∇-proto vs ∇-s2l 0.46, vs ∇-less 0.79, vs h-proto 0.26, vs ℓ-proto 0.75.",
        ours,
        verdict,
        f"compares the ORDER of the four overlaps (ours at {_pct(budget)}, seed mean), not their values "
        "(another dataset and model); holds: every pair of pairs in the same order; partly: at least half.",
        paper="0.46 / 0.79 / 0.26 / 0.75",
        table=table,
    )


def _same_order(a: Sequence[float], b: Sequence[float]) -> float:
    pairs = list(combinations(range(len(a)), 2))
    return sum((a[i] - a[j]) * (b[i] - b[j]) > 0 for i, j in pairs) / len(pairs)


def _first(grid: GridSelections, budget: Any, algorithm: str, reps: Sequence[str]) -> tuple[str, str] | None:
    for rep in reps:
        if grid.has(rep, algorithm, budget):
            return rep, algorithm
    return None


# --- label and performance findings ------------------------------------------------------------------
def less_majority(
    selections: Callable[[str, float, int], np.ndarray | None], labels: np.ndarray, names: Sequence[str],
    budgets: Sequence[float], seeds: Sequence[int], *, plain: str, balanced: str,
) -> Finding:  # fmt: skip
    """LESS over-selects the majority label; balancing restores the full set's ratio."""
    full = np.bincount(labels, minlength=len(names)) / len(labels)
    majority = int(np.argmax(full))
    rows: list[dict[str, Any]] = []
    for budget in budgets:
        for name in (plain, balanced):
            shares = []
            for seed in seeds:
                picked = selections(name, budget, seed)
                if picked is not None:
                    dist = label_distribution(picked, labels, classes=list(range(len(names))))
                    shares.append(float(dist["frac_selected"].iloc[majority]))
            mean, std, n = _spread(shares)
            rows.append({"selection": name, "budget": budget, "majority share": mean, "sd": std, "seeds": n,
                         "full set": float(full[majority])})  # fmt: skip
    claim = "LESS over-selects the majority label; label balancing restores the full set's ratio."
    rule = (
        f"holds: LESS's majority share exceeds the full set's by > {OVER_SELECTION} at some budget and the "
        f"balanced one is within {BALANCED_TOLERANCE} of it at every budget."
    )
    table = pd.DataFrame(rows)
    if any(r["seeds"] == 0 for r in rows):
        return Finding("less_majority", claim, "selections missing", "not measured", rule, table=table)
    over = any(r["majority share"] - r["full set"] > OVER_SELECTION for r in rows if r["selection"] == plain)
    restored = all(
        abs(r["majority share"] - r["full set"]) <= BALANCED_TOLERANCE
        for r in rows
        if r["selection"] == balanced
    )
    verdict = "holds" if over and restored else ("partly" if over or restored else "fails")
    ours = (
        "; ".join(f"{r['selection']} {_pct(r['budget'])}: {r['majority share']:.2f}" for r in rows)
        + f" (full set {full[majority]:.2f}, class '{names[majority]}')"
    )
    return Finding("less_majority", claim, ours, verdict, rule, table=table)


def collapse_at_high_compression(paired: pd.DataFrame, budget: float, names: Sequence[str]) -> Finding:
    """Score-based selectors are worse than random at high compression (the smallest budget)."""
    rows = [_interval_row(r, r["mean_diff"]) for r in _at_budget(paired, budget) if r["selection"] in names]
    claim = f"Score-based selection collapses at high compression ({_pct(budget)}): worse than random."
    rule = (
        "reliably worse: the 95% paired t interval of the difference to random is below 0 with >= 5 seeds; "
        "holds: most score-based selections are reliably worse; not shown: fewer than 5 seeds."
    )
    if not rows:
        return Finding("collapse", claim, "no score-based selection in the study", "not measured", rule)
    verdict = _reliable_verdict(rows, sum(r["high"] < 0 for r in rows), holds_above=len(rows) / 2)
    return Finding(
        "collapse", claim, _intervals_text(rows), verdict, rule, table=_interval_table(rows, "Δ vs random")
    )


def calibration_lifts(results_paired: Mapping[str, pd.DataFrame], budget: float) -> Finding:
    """Calibrated score-based selection beats its uncalibrated version (paired by seed)."""
    rows = []
    for calibrated, frame in results_paired.items():
        found = [r for r in _at_budget(frame, budget) if r["selection"] == calibrated]
        rows += [_interval_row(r, r["mean_diff"]) for r in found[:1]]
    claim = f"Calibration (Ayed & Hayou) lifts score-based selection at high compression ({_pct(budget)})."
    rule = (
        "lift = calibrated minus uncalibrated, paired by seed, 95% paired t interval; holds: every lift's "
        "interval is above 0 with >= 5 seeds; partly: some; not shown: fewer than 5 seeds."
    )
    if not rows:
        return Finding("calibration", claim, "no calibrated selection in the study", "not measured", rule)
    verdict = _reliable_verdict(rows, sum(r["low"] > 0 for r in rows), holds_above=len(rows) - 0.5)
    return Finding(
        "calibration", claim, _intervals_text(rows), verdict, rule, table=_interval_table(rows, "lift")
    )


def _reliable_verdict(rows: list[dict[str, Any]], hits: int, *, holds_above: float) -> Verdict:
    """``not shown`` below 5 paired seeds; else ``holds`` when more than ``holds_above`` of the rows are
    reliable hits, ``partly`` with some, ``fails`` with none."""
    if min(r["seeds"] for r in rows) < MIN_SEEDS_FOR_FLAG:
        return "not shown"
    return "holds" if hits > holds_above else ("partly" if hits else "fails")


def _at_budget(paired: pd.DataFrame, budget: float) -> list[dict[str, Any]]:
    return [r for r in _records(paired) if round(float(r["budget"]), 9) == round(float(budget), 9)]


def _interval_row(row: Mapping[str, Any], diff: float) -> dict[str, Any]:
    return {"selection": str(row["selection"]), "diff": float(diff), "low": float(row["ci_low"]),
            "high": float(row["ci_high"]), "seeds": int(row["n_paired"])}  # fmt: skip


def _interval_table(rows: list[dict[str, Any]], what: str) -> pd.DataFrame:
    return pd.DataFrame(
        {"selection": r["selection"], what: r["diff"], "95% interval": f"[{r['low']:+.3f}, {r['high']:+.3f}]",
         "seeds": r["seeds"]}
        for r in rows
    )  # fmt: skip


def _intervals_text(rows: list[dict[str, Any]]) -> str:
    return "; ".join(f"{r['selection']} {r['diff']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}]" for r in rows)


def _records(frame: pd.DataFrame, **equal: Any) -> list[dict[str, Any]]:
    """The rows of ``frame`` as dicts, those whose columns equal ``equal``."""
    rows = cast(list[dict[str, Any]], frame.to_dict("records"))
    return [r for r in rows if all(r.get(k) == v for k, v in equal.items())]


def proxy_transfer(proxy: pd.DataFrame, main: pd.DataFrame, *, proxy_name: str, main_name: str) -> Finding:
    """Do the selections rank the same when the main model is the proxy's kind and when it is another model?

    ``proxy`` and ``main`` are :func:`~datadiet.analysis.stats.paired_difference` frames (differences to
    random) of the same selections and budgets, trained with two main models.
    """
    keyed = {(r["selection"], round(float(r["budget"]), 9)): r for r in _records(main)}
    rows = []
    for r in _records(proxy):
        other = keyed.get((r["selection"], round(float(r["budget"]), 9)))
        if r["selection"] == "random" or other is None:
            continue
        rows.append({"selection": r["selection"], "budget": _pct(r["budget"]),
                     f"Δ {proxy_name}": float(r["mean_diff"]), f"Δ {main_name}": float(other["mean_diff"]),
                     "seeds": min(int(r["n_paired"]), int(other["n_paired"]))})  # fmt: skip
    table = pd.DataFrame(rows)
    claim = (
        f"A selection made with a cheap proxy (the frozen reference) is judged alike when the main model is "
        f"{main_name}: the methods' differences to random keep their order."
    )
    rule = (
        "Spearman correlation of the per-(selection, budget) differences to random under the two main "
        "models, and how many keep their sign; holds: rho >= 0.5 and >= 75% same sign; "
        f"partly: rho >= {WEAK_RHO}; "
        "the seeds are too few to call any single difference reliable."
    )
    if len(rows) < 3:
        return Finding("proxy_transfer", claim, "too few shared cells", "not measured", rule, table=table)
    a = table[f"Δ {proxy_name}"].to_numpy(dtype=float)
    b = table[f"Δ {main_name}"].to_numpy(dtype=float)
    rho = float(pd.Series(a).rank().corr(pd.Series(b).rank()))
    same = float(np.mean(np.sign(a) == np.sign(b)))
    verdict = "holds" if rho >= 0.5 and same >= 0.75 else ("partly" if rho >= WEAK_RHO else "fails")
    ours = f"Spearman rho {rho:+.2f} over {len(rows)} cells; same sign in {same:.0%}"
    return Finding("proxy_transfer", claim, ours, verdict, rule, table=table)


def _share_verdict(n_hold: int, n: int) -> Verdict:
    if n == 0:
        return "not measured"
    return "holds" if n_hold == n else ("partly" if n_hold else "fails")


def _pct(budget: Any) -> str:
    value = float(budget)  # type: ignore[arg-type]
    return f"{100 * value:g}%" if value <= 1 else f"k={int(value)}"
