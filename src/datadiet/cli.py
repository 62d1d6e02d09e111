"""The ``datadiet`` command. Commands are thin: they parse, call the library, and write atomically."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import yaml
from rich.console import Console
from rich.table import Table

from datadiet.io import atomic_write_json, load_array, read_json

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Data pruning: representation x selection."
)
console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])
EngineOption = Annotated[str, typer.Option(help="local | ray (see docs/distributed.md).")]
RayAddressOption = Annotated[
    str | None, typer.Option(help="With --engine ray: 'auto' or 'ray://head:10001'; unset: a local one.")
]


def _friendly_errors(func: F) -> F:
    """Turn user errors into one line on stderr and exit code 2.

    User errors: bad values and types, missing or unreadable files and folders (any ``OSError``: not found,
    permission denied, a folder where a file is expected), unknown keys, a missing optional dependency
    (whose message says what to install), and a damaged cache entry (with the command that rebuilds it).
    """

    from datadiet._store_io import StoreError

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except StoreError as exc:  # a damaged or locked cache entry: the whole message names the fix
            typer.echo(f"error: {' '.join(str(exc).split())}", err=True)
            raise typer.Exit(code=2) from None
        except (ValueError, TypeError, OSError, KeyError, ImportError) as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            typer.echo(f"error: {message}", err=True)
            raise typer.Exit(code=2) from None

    return wrapper  # type: ignore[return-value]


def parse_budget(text: str) -> int | float:
    """``"1200"`` is a count; ``"0.3"`` (or ``"3e-1"``) is a fraction."""
    text = text.strip()
    if text.lstrip("+-").isdigit():
        return int(text)
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"--budget must be an int count or a fraction in (0, 1]. Got {text!r}.") from None


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """``["n_clusters=10", "metric=cosine"]`` -> typed dict (values parsed as YAML scalars/lists)."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--param must look like key=value. Got {pair!r}.")
        params[key.strip()] = _numbers_as_numbers(yaml.safe_load(value)) if value.strip() else None
    return params


def _numbers_as_numbers(value: Any) -> Any:
    """YAML 1.1 reads ``2e-5`` (no dot) as a string; read it as the float it is."""
    if isinstance(value, list):
        return [_numbers_as_numbers(v) for v in value]
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


@app.command()
@_friendly_errors
def select(
    features: Annotated[Path, typer.Option(help="Representation (.npy): N x d, N x T or N x C x d.")],
    algorithm: Annotated[str, typer.Option(help="Selector name; see `datadiet algorithms`.")],
    budget: Annotated[str, typer.Option(help="Count (1200) or fraction in (0, 1] (0.3 -> floor(0.3 N)).")],
    out: Annotated[Path, typer.Option(help="Where to write selection.json.")],
    labels: Annotated[Path | None, typer.Option(help="Labels (.npy or .txt), one per example.")] = None,
    val_features: Annotated[
        Path | None, typer.Option(help="Validation representation (.npy) for less.")
    ] = None,
    val_groups: Annotated[Path | None, typer.Option(help="Group id per validation row (.npy/.txt).")] = None,
    balance: Annotated[str, typer.Option(help="none | stratified")] = "none",
    calibrate: Annotated[float | None, typer.Option(help="Share of the budget from the scores.")] = None,
    weighting: Annotated[str, typer.Option(help="With --calibrate: none | unbiased")] = "none",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    param: Annotated[
        list[str] | None, typer.Option(help="Selector parameter key=value (repeatable).")
    ] = None,
    engine: EngineOption = "local",
    ray_address: RayAddressOption = None,
) -> None:
    """Select a subset from a stored representation and write selection.json."""
    from datadiet.api import select as run_select

    params = parse_params(param or [])
    if val_groups is not None:
        params["val_groups"] = load_array(val_groups, name="val groups")
    values = load_features(features, name="features")
    with engine_block(engine, ray_address):
        selection = run_select(
            algorithm,
            values,
            parse_budget(budget),
            labels=None if labels is None else load_array(labels, name="labels"),
            val=None if val_features is None else load_features(val_features, name="val features"),
            seed=seed,
            balance=None if balance == "none" else balance,
            calibrate=calibrate,
            weighting=weighting,
            **params,
        )
    record = selection.to_dict()
    record["features"] = str(features)
    atomic_write_json(out, record)
    console.print(f"selected {selection.budget} of {len(values.values)} examples with {algorithm} -> {out}")


@contextlib.contextmanager
def engine_block(name: str, address: str | None) -> Iterator[None]:
    """Run the block's maps on the named engine (``local`` or ``ray``)."""
    from datadiet.engine import make_engine, use_engine

    if address is not None and name != "ray":
        raise typer.BadParameter("--ray-address needs --engine ray.")
    with use_engine(make_engine(name, address=address)):
        yield


def load_features(path: Path, *, name: str) -> Any:
    """A ``.npy`` array, or a representation-store entry directory (validated against its manifest)."""
    from datadiet.representations.base import Representation
    from datadiet.store import RepresentationStore

    if path.is_dir():
        rep = RepresentationStore(path.parent).load(path.name)
        if rep is None:
            raise FileNotFoundError(f"{name} '{path}' is not a complete representation-store entry.")
        return rep
    return Representation(load_array(path, name=name, mmap=True), kind="features")


@app.command()
@_friendly_errors
def reference(
    config: Annotated[Path, typer.Option(help="YAML config (see docs/representations.md).")],
) -> None:
    """Train the reference model and record its training dynamics and checkpoints (resumable)."""
    from datadiet.config import ReferenceConfig, load_config
    from datadiet.pipeline import run_reference

    run = run_reference(load_config(config, ReferenceConfig))
    console.print(f"reference run ready in {run.run_dir}")


@app.command()
@_friendly_errors
def represent(
    config: Annotated[Path, typer.Option(help="YAML config (see docs/representations.md).")],
    engine: EngineOption = "local",
    ray_address: RayAddressOption = None,
) -> None:
    """Extract dynamics, hidden states and projected gradients into the store (cached, resumable)."""
    from datadiet.config import ReferenceConfig, load_config
    from datadiet.pipeline import run_represent

    cfg = load_config(config, ReferenceConfig)
    with engine_block(engine, ray_address):
        index = run_represent(cfg)
    table = Table(title="representations (use the path with `datadiet select --features`)")
    for column in ("name", "shape", "path"):
        table.add_column(column, overflow="fold")
    for rep_name, entry in index.items():
        where = Path(entry["path"]).parent if "key" in entry else Path(entry["path"])
        table.add_row(rep_name, "x".join(map(str, entry["shape"])), str(where))
    Console().print(table)


@app.command()
@_friendly_errors
def overlap(
    selections: Annotated[list[Path], typer.Argument(help="selection.json files.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Overlap matrix |Si ∩ Sj| / |Si| between selections, with the random expectation k/N."""
    from datadiet.analysis.overlap import overlap_matrix, random_overlap_expectation
    from datadiet.selection.base import Selection

    loaded = [Selection.from_dict(read_json(path, name="selection")) for path in selections]
    names = [path.stem for path in selections]
    sizes = {sel.meta.get("n_examples") for sel in loaded} - {None}
    if len(sizes) > 1:
        raise ValueError(
            f"The selections come from datasets of different sizes {sorted(sizes)}; compare like with like."
        )
    matrix = overlap_matrix(loaded)
    n = sizes.pop() if sizes else None
    expected = [None if n is None else random_overlap_expectation(sel.budget, n) for sel in loaded]
    if as_json:
        typer.echo(json.dumps({"names": names, "matrix": matrix.tolist(), "random_expectation": expected}))
        return
    table = Table(title="overlap |Si ∩ Sj| / |Si| (row i)")
    for column in ["", *names, "random k/N"]:
        table.add_column(column)
    for name, row, exp in zip(names, matrix, expected, strict=True):
        table.add_row(name, *(f"{v:.3f}" for v in row), "n/a" if exp is None else f"{exp:.3f}")
    Console().print(table)


@app.command()
@_friendly_errors
def synthetic(
    out: Annotated[Path, typer.Option(help="Output directory.")],
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    epochs: Annotated[int, typer.Option(help="Reference-model epochs (trajectory length).")] = 100,
) -> None:
    """The 2D Gaussian-mixture study of Du et al.: figures, overlap.csv, selections.json."""
    from datadiet.analysis.synthetic import run_synthetic_study

    with console.status("running the synthetic study"):
        result = run_synthetic_study(out, seed=seed, epochs=epochs)
    console.print(f"wrote {len(result.files)} files to {out}")


@app.command()
@_friendly_errors
def study(
    config: Annotated[Path, typer.Option(help="YAML study config (see docs/study.md).")],
    engine: EngineOption = "local",
    ray_address: RayAddressOption = None,
) -> None:
    """Retrain the main model on every selection x budget x seed (resumable) and write the report."""
    from datadiet.config import StudyConfig, load_config
    from datadiet.study import run_study

    cfg = load_config(config, StudyConfig)
    with engine_block(engine, ray_address):
        out = run_study(cfg)
    console.print(f"results: {out / 'results.csv'}  report: {out / 'report.html'}")


@app.command()
@_friendly_errors
def demo(
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("demo-out"),
    mode: Annotated[str, typer.Option(help="frozen (fast CPU path) | lora | full")] = "frozen",
    full: Annotated[
        bool, typer.Option("--full", help="Fine-tune the whole encoder (same as --mode full).")
    ] = False,
) -> None:
    """The end-to-end study on the embedded default: Reuters R8 with MiniLM."""
    from datadiet.demo import demo_config
    from datadiet.study import run_study

    if mode not in ("frozen", "lora", "full"):
        raise ValueError(f"--mode must be one of ['frozen', 'lora', 'full']. Got {mode!r} instead.")
    result = run_study(demo_config(str(out), mode="full" if full else mode))
    console.print(f"results: {result / 'results.csv'}  report: {result / 'report.html'}")


@app.command()
def algorithms() -> None:
    """List the selection algorithms, what they read and their parameters."""
    from datadiet.selection.registry import SELECTORS

    table = Table(title="datadiet selectors")
    for column in ("name", "reads", "parameters (defaults)"):
        table.add_column(column)
    for name in SELECTORS.names():
        params = ", ".join(f"{k}={v!r}" for k, v in SELECTORS.parameters(name).items()) or "-"
        table.add_row(name, SELECTORS.get(name).reads, params)
    Console().print(table)


def main() -> None:  # pragma: no cover - console entry
    app(prog_name="datadiet")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
