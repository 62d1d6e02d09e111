"""``datadiet grid``: every representation of a represent run x every selector, with overlaps."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from datadiet.cli import (
    EngineOption,
    RayAddressOption,
    _friendly_errors,
    app,
    console,
    engine_block,
    parse_budget,
)
from datadiet.errors import DatadietError, ParameterError

ListOption = Annotated[str | None, typer.Option(help="Comma-separated names (default: all).")]


@app.command()
@_friendly_errors
def grid(
    run: Annotated[
        Path | None, typer.Option(help="A finished represent output folder (holds representations.json).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="A study YAML: represent its reference first (only what is missing).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: <run>/grid).")] = None,
    budgets: Annotated[
        str | None,
        typer.Option(help="Comma-separated budgets, e.g. 0.05,0.1,0.3 (default 0.05,0.1,0.3,0.5)."),
    ] = None,
    seeds: Annotated[str | None, typer.Option(help="Comma-separated seeds (default 0,1,2).")] = None,
    algorithms: ListOption = None,
    representations: ListOption = None,
    gradient_view: Annotated[
        str,
        typer.Option(
            help="How 2-D selectors read an N x C x d gradient stack: flatten | lrmean | checkpoint=E."
        ),
    ] = "flatten",
    engine: EngineOption = "local",
    ray_address: RayAddressOption = None,
) -> None:
    """Run every selector on every training representation at every budget and seed; write overlaps."""
    from datadiet.pipeline.grid import DEFAULT_BUDGETS, DEFAULT_SEEDS, plan_grid, run_grid
    from datadiet.representations.views import check_view

    if (run is None) == (config is None):
        raise ParameterError("Pass exactly one of --run FOLDER (a represent output) or --config STUDY.yaml.")
    _prefixed("--gradient-view", check_view, gradient_view)
    budget_list = None if budgets is None else _prefixed("--budgets", _parse_budgets, budgets)
    seed_list = None if seeds is None else _parse_seeds(seeds)
    with engine_block(engine, ray_address):
        if config is not None:
            run, defaults = _represent(config)
            budget_list, seed_list = budget_list or defaults[0], seed_list or defaults[1]
        assert run is not None  # one of the two options gives it (checked above)
        plan = plan_grid(
            run,
            algorithms=_names(algorithms),
            representations=_names(representations),
            gradient_view=gradient_view,
        )
        budget_list = list(budget_list or DEFAULT_BUDGETS)
        _prefixed("--budgets", _check_budgets, budget_list, plan.n_examples)
        result = run_grid(plan, out, budgets=budget_list, seeds=list(seed_list or DEFAULT_SEEDS))
    from datadiet.report.grid import write_grid_figures

    figures = write_grid_figures(result)
    _print_tables(result)
    console.print(
        f"grid: {result.n_computed} selections computed, {result.n_reused} reused, {len(figures)} figures, "
        f"{result.timings['total_s']:.1f} s -> {result.out}"
    )


def _prefixed(option: str, check: Any, *args: Any) -> Any:
    """``check(*args)``, its one-line error starting with the option it is about."""
    try:
        return check(*args)
    except DatadietError as exc:
        raise ParameterError(f"{option}: {exc}") from None


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [part.strip() for part in text.split(",") if part.strip()]


def _parse_budgets(text: str) -> list[int | float]:
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise ParameterError("give at least one budget, e.g. 0.05,0.1,0.3.")
    return [parse_budget(part) for part in parts]


def _check_budgets(budgets: list[int | float], n: int) -> None:
    from datadiet.selection.base import resolve_budget

    for budget in budgets:
        resolve_budget(budget, n)


def _parse_seeds(text: str) -> list[int]:
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts or not all(part.isdigit() for part in parts):
        raise ParameterError(f"--seeds must be comma-separated ints >= 0, e.g. 0,1,2. Got {text[:40]!r}.")
    return [int(part) for part in parts]


def _represent(config: Path) -> tuple[Path, tuple[list[float], list[int]]]:
    """Represent the study's reference (only what is missing); its folder and the study's budgets/seeds."""
    from datadiet.config import StudyConfig, load_config
    from datadiet.pipeline.represent import run_represent

    cfg = load_config(config, StudyConfig)
    run_represent(cfg.reference)
    return Path(cfg.reference.output), (list(cfg.budgets), list(cfg.seeds))


def _print_tables(result: Any) -> None:
    """The combinations (allowed and impossible, with reasons) and the summary, on stdout."""
    out = Console()
    table = Table(title="combinations (representation x algorithm)")
    for column in ("representation", "algorithm", "status", "reason"):
        table.add_column(column, overflow="fold")
    for combo in result.combinations:
        status = "[green]allowed[/]" if combo.status == "allowed" else "[red]impossible[/]"
        table.add_row(combo.name, combo.algorithm, status, combo.reason)
    out.print(table)
    frame = result.summary
    if not len(frame):
        return
    table = Table(title="summary: mean overlap |Si ∩ Sj| / |Si| (random: k/N)")
    for column in ("budget", "k", "same representation", "same algorithm", "random k/N"):
        table.add_column(column, justify="right")
    for budget, rows in frame.groupby("budget", sort=False):
        value = dict(zip(rows["measure"], rows["value"], strict=False))
        table.add_row(
            str(budget), str(int(rows["k"].iloc[0])), _fmt(value.get("same_representation")),
            _fmt(value.get("same_algorithm")), _fmt(float(rows["random"].iloc[0])),
        )  # fmt: skip
    out.print(table)
    variation = frame[frame["measure"] == "cross_representation_variation"]
    cells = {(r["algorithm"], r["budget"]): r["value"] for r in variation.to_dict("records")}
    chance = {r["budget"]: r["random"] for r in variation.to_dict("records")}
    table = Table(
        title="cross-representation variation: 1 - mean overlap of an algorithm across representations"
    )
    table.add_column("algorithm")
    for budget in chance:
        table.add_column(f"{budget} (random {chance[budget]:.3f})", justify="right")
    for algorithm in dict.fromkeys(variation["algorithm"]):
        table.add_row(str(algorithm), *(_fmt(cells.get((algorithm, budget))) for budget in chance))
    out.print(table)


def _fmt(value: Any) -> str:
    return "n/a" if value is None or value != value else f"{float(value):.3f}"
