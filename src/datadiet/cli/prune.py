"""``datadiet prune`` (a dataset in, the pruned dataset out) and ``datadiet recipes`` (what each costs)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from datadiet.cli import _friendly_errors, app, console, parse_budget
from datadiet.errors import DatadietError, ParameterError

COLUMN_OPTIONS = ("text", "label", "id")


@app.command()
@_friendly_errors
def prune(
    data: Annotated[
        str | None,
        typer.Option(
            help="A jsonl/csv/parquet file or folder, an HF dataset saved to disk, or an embedded name."
        ),
    ] = None,
    budget: Annotated[str, typer.Option(help="Rows to keep: a count (1200) or a fraction (0.3).")] = "0.3",
    out: Annotated[
        Path, typer.Option(help="Output folder (the pruned file, selection.json, summary.json).")
    ] = Path("pruned"),
    recipe: Annotated[str, typer.Option(help="A recipe (see `datadiet recipes`).")] = "auto",
    config: Annotated[
        Path | None, typer.Option(help="A reference YAML: dataset columns and splits, model, training.")
    ] = None,
    text: Annotated[str | None, typer.Option(help="Text column (default 'text').")] = None,
    label: Annotated[str | None, typer.Option(help="Label column (default 'label').")] = None,
    id: Annotated[str | None, typer.Option(help="Id column (default: rows are numbered).")] = None,
    split: Annotated[str | None, typer.Option(help="The split to prune (default 'train').")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Prune a dataset with a recipe and write the kept rows in the input's own format."""
    import warnings

    from datadiet.api import prune as run_prune
    from datadiet.pipeline.prune import EmptyClassWarning

    if data is None and config is None:
        raise ParameterError("Pass --data PATH (a file or folder, an HF dataset on disk, an embedded name).")
    columns: dict[str, Any] = {k: v for k, v in (("text", text), ("label", label), ("id", id)) if v}
    if split:
        columns["train_split"] = split
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyClassWarning)  # said below, in the summary
        try:
            result = run_prune(data, parse_budget(budget), recipe, out=out, config=config, seed=seed,
                               columns=columns)  # fmt: skip
        except DatadietError as exc:
            raise type(exc)(_as_options(str(exc))) from None
    print_summary(result.summary, result.files)


def _as_options(message: str) -> str:
    """A dataset error's config-key hint (``Set dataset.label to ...``) as the option to pass instead."""
    for key in COLUMN_OPTIONS:
        option = f"ass --{key} (or set dataset.{key} in --config)"
        message = re.sub(rf"\b([Ss])et dataset\.{key}\b", lambda m, o=option: "Pp"[m[1] == "s"] + o, message)
    return message


def print_summary(summary: dict[str, Any], files: list[Path]) -> None:
    """The prune summary as a table: rows kept, labels before and after, duplicates, recipe, time."""
    out = Console()
    n, kept = summary["n_examples"], summary["kept"]
    name = summary["recipe"]["name"]
    how = f"recipe '{name}'" if name else f"{summary['recipe'].get('algorithm')}"
    out.print(f"kept {kept} of {n} rows ({kept / n:.1%}) with {how} -> "
              + ", ".join(str(f) for f in files))  # fmt: skip
    if summary["labels"]:
        table = Table(title="labels")
        for column in ("label", "before", "after", "kept share"):
            table.add_column(column, justify="right" if column != "label" else "left")
        for name, counts in summary["labels"].items():
            share = counts["after"] / counts["before"] if counts["before"] else 0.0
            table.add_row(name, str(counts["before"]), str(counts["after"]), f"{share:.0%}")
        out.print(table)
    seconds = summary["seconds"]
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items() if k != "total") or "selection made before"
    out.print(
        f"exact duplicates dropped: {summary['duplicates_dropped']}; time {seconds['total']:.1f} s ({parts})"
    )
    out.print(summary["training_saved"]["note"])
    for note in summary["notes"]:
        console.print(f"warning: {note}")


@app.command()
def recipes() -> None:
    """List the recipes: what each does and what it costs to compute."""
    from datadiet.recipes import RECIPES

    table = Table(title="datadiet recipes (datadiet prune --recipe NAME; docs/recipes.md)")
    for column in ("name", "what it does", "reads", "costs"):
        table.add_column(column, overflow="fold")
    for name in RECIPES.registered():
        recipe = RECIPES.get(name)
        table.add_row(name, recipe.brief, ", ".join(recipe.reads()) or "labels", recipe.cost())
    Console().print(table)


@app.command("recipes-study")
@_friendly_errors
def recipes_study(
    out: Annotated[Path, typer.Option(help="Where the studies go (resumable).")] = Path("runs/recipes"),
    doc: Annotated[Path, typer.Option(help="The markdown page to write (its figure goes beside it).")] = Path(
        "docs/recipes.md"
    ),
    tasks: Annotated[
        str, typer.Option(help="Comma-separated, from: reuters_r8, newsgroups20, rotten_tomatoes.")
    ] = "reuters_r8,newsgroups20,rotten_tomatoes",
) -> None:
    """Every candidate recipe against random on the embedded tasks; writes docs/recipes.md and the verdict."""
    from datadiet.cli import check_option
    from datadiet.experiments.recipes.setup import TASKS

    names = [name.strip() for name in tasks.split(",") if name.strip()]
    for name in names:
        check_option("--tasks", name, tuple(TASKS))
    from datadiet.experiments.recipes.run import run_recipes, setup_values, target_met, target_verdicts
    from datadiet.report.recipes import write_recipes

    results = run_recipes(out, names)
    verdicts = target_verdicts(results)
    written = write_recipes(results, doc, verdicts=verdicts, met=target_met(verdicts), setup=setup_values())
    console.print(f"wrote {written} ({len(results)} tasks; studies in {out})")
