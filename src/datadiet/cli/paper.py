"""``datadiet paper``: the reproduction of Du et al. (ACL 2025) behind docs/paper.md, in one command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from datadiet.cli import _friendly_errors, app, check_option, console
from datadiet.errors import ParameterError


@app.command()
@_friendly_errors
def paper(
    out: Annotated[Path, typer.Option(help="Where the studies and grids go (resumable).")] = Path(
        "runs/paper"
    ),
    doc: Annotated[Path, typer.Option(help="The markdown page to write (its figures go beside it).")] = Path(
        "docs/paper.md"
    ),
    datasets: Annotated[
        str, typer.Option(help="Comma-separated, from: reuters_r8, rotten_tomatoes, winogrande.")
    ] = "reuters_r8,rotten_tomatoes,winogrande",
    main_model: Annotated[
        bool, typer.Option(help="Also train LoRA MiniLM on the Rotten Tomatoes proxy's selections.")
    ] = True,
) -> None:
    """Run every dataset's study and grid, check the paper's findings, and write the page."""
    from datadiet.experiments.paper.setup import PAPER_DATASETS

    names = [name.strip() for name in datasets.split(",") if name.strip()]
    for name in names:
        check_option("--datasets", name, tuple(PAPER_DATASETS))
    from datadiet.experiments.paper.run import run_paper
    from datadiet.report.paper import write_paper

    run = run_paper(out, names, main_model=main_model)
    if not run.datasets:
        raise ParameterError(f"no dataset could run: {run.skipped}")
    written = write_paper(run.datasets, doc, main_model=run.main_model, skipped=run.skipped)
    for name, reason in run.skipped.items():
        console.print(f"skipped {name}: {reason}")
    console.print(f"wrote {written} ({len(run.datasets)} datasets; runs in {out})")
