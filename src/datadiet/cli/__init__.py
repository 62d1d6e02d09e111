"""The ``datadiet`` command. Commands are thin: they parse, call the library, and write atomically."""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
from collections.abc import Callable, Iterator
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import yaml
from rich.console import Console
from rich.table import Table

from datadiet._core.checks import did_you_mean
from datadiet._core.files import atomic_write_json, load_array
from datadiet._core.records import read_json_file
from datadiet.errors import DatadietError, ParameterError, StoreError

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Data pruning: representation x selection."
)
console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])
EngineOption = Annotated[str, typer.Option(help="local | ray (see docs/distributed.md).")]
RayAddressOption = Annotated[
    str | None, typer.Option(help="With --engine ray: 'auto' or 'ray://head:10001'; unset: a local one.")
]
OutputOption = Annotated[
    Path | None, typer.Option(help="Output folder, overriding the config's `output` (e.g. after moving it).")
]
MAX_PARAM_CHARS = 10_000
"""Longest ``--param`` value (a list of a few hundred learning rates fits easily)."""
MAX_PARAM_DEPTH = 8
"""Deepest nesting of lists and mappings in a ``--param`` value."""
_EXPONENT_NUMBER = re.compile(r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+")
_DECIMAL = re.compile(r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")


def _friendly_errors(func: F) -> F:
    """Turn user errors into one line on stderr and exit code 2.

    User errors are what datadiet raises for input a user can fix (:class:`~datadiet.errors.DatadietError`:
    bad values and types, unknown names, malformed configs and datasets, a missing optional dependency, a
    damaged cache entry with the command that rebuilds it) and ``OSError`` (a file or folder not found,
    permission denied, a full disk). Anything else is a bug and keeps its traceback. Live progress bars are
    closed first, so the message starts its own line.
    """

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except StoreError as exc:  # a damaged or locked cache entry: the whole message names the fix
            _print_error(" ".join(str(exc).split()))
            raise typer.Exit(code=2) from None
        except (DatadietError, OSError) as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            _print_error(message)
            raise typer.Exit(code=2) from None

    return wrapper  # type: ignore[return-value]


def _print_error(message: str) -> None:
    """``error: message`` on stderr, at the start of a line even while progress bars are drawn."""
    _close_progress_bars()
    typer.echo(f"error: {message}", err=True)


def _close_progress_bars() -> None:
    """Stop datadiet's live progress display and close every live tqdm bar (the libraries datadiet calls draw
    them), which ends or clears their lines, so nothing is printed onto a bar."""
    from datadiet._core.progress import stop_live

    stop_live()
    std = sys.modules.get("tqdm.std")  # never import tqdm just for this
    if std is None:
        return
    for bar in list(getattr(std.tqdm, "_instances", ())):
        with contextlib.suppress(Exception):
            bar.close()


def check_option(option: str, value: str, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``, else a ``ValueError`` with a "did you mean" hint."""
    if value not in choices:
        hint = did_you_mean(value, choices)
        raise ParameterError(f"{option} must be one of {list(choices)}. Got {value!r} instead.{hint}")
    return value


def parse_budget(text: str) -> int | float:
    """``"1200"`` is a count; ``"0.3"`` (or ``"3e-1"``) is a fraction."""
    text = text.strip()
    if re.fullmatch(r"[-+]?[0-9]+", text):
        return int(text)
    if _DECIMAL.fullmatch(text):
        return float(text)
    raise ParameterError(f"--budget must be an int count or a fraction in (0, 1]. Got {text[:40]!r}.")


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """``["n_clusters=10", "metric=cosine"]`` -> typed dict (values parsed as YAML scalars/lists).

    A value is plain data: a number, a word, true/false, null, or a list or mapping of those. YAML tags
    (``!!python/...``), anchors and aliases, dates, NaN/inf and values over :data:`MAX_PARAM_CHARS`
    characters are refused, naming the ``--param``.
    """
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ParameterError(f"--param must look like key=value. Got {pair[:80]!r}.")
        if key in params:
            raise ParameterError(f"--param {key} is given twice; pass each parameter once.")
        params[key] = parse_param_value(key, value)
    return params


def parse_param_value(key: str, text: str) -> Any:
    """The value of ``--param key=text`` (see :func:`parse_params`)."""
    where = f"--param {key}"
    if not text.strip():
        return None
    if len(text) > MAX_PARAM_CHARS:
        raise ParameterError(f"{where} is {len(text)} characters long; the limit is {MAX_PARAM_CHARS}.")
    if _flow_depth(text) > MAX_PARAM_DEPTH:  # checked first: YAML parses deep [[[...]]] in quadratic time
        raise ParameterError(f"{where} is nested more than {MAX_PARAM_DEPTH} levels deep.")
    try:
        _refuse_yaml_features(text, where)
        value = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as exc:
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ParameterError(
            f"{where}={text[:40]!r} is not a valid value ({problem}). Write a number, a word, or a list like "
            "[1, 2]; quote text that holds YAML characters ('...')."
        ) from None
    return _plain_value(value, where, depth=0)


def _flow_depth(text: str) -> int:
    """The deepest nesting of ``[...]``/``{...}`` in ``text``, brackets inside quoted scalars not counted."""
    depth = deepest = 0
    quote, escaped, previous = "", False, " "
    for char in text:
        if quote:
            if escaped:
                escaped = False
            elif char == "\\" and quote == '"':
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "'\"" and (previous.isspace() or previous in "[{,:"):  # a quoted scalar starts here
            quote = char
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
        previous = char
    return deepest


def _refuse_yaml_features(text: str, where: str) -> None:
    """Refuse tags, anchors and aliases (they build objects or blow up in size) before anything is built."""
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise ParameterError(
                f"{where} uses a YAML anchor or alias (& or *); write the value out in full."
            )
        if getattr(event, "tag", None) is not None:  # set only when the text names a tag
            raise ParameterError(f"{where} uses a YAML tag ({event.tag}); write plain values (quote text).")


def _plain_value(value: Any, where: str, *, depth: int) -> Any:
    """``value`` as plain JSON-like data; YAML 1.1 strings such as ``2e-5`` read as the floats they are."""
    if depth > MAX_PARAM_DEPTH:
        raise ParameterError(f"{where} is nested more than {MAX_PARAM_DEPTH} levels deep.")
    if isinstance(value, str) and _EXPONENT_NUMBER.fullmatch(value.strip()):
        value = float(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ParameterError(f"{where} is {value}; a parameter must be a finite number.")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [_plain_value(item, where, depth=depth + 1) for item in value]
    if isinstance(value, dict) and all(isinstance(name, str) for name in value):
        return {name: _plain_value(item, where, depth=depth + 1) for name, item in value.items()}
    raise ParameterError(
        f"{where} reads as a {type(value).__name__} ({str(value)[:40]!r}); quote it to pass text, or "
        "give a number, a word, or a list."
    )


@app.callback()
@_friendly_errors
def _global_options(
    device: Annotated[
        str | None,
        typer.Option(
            help="Where every stage runs: auto | cpu | cuda | cuda:N (sets DATADIET_DEVICE; unset: that "
            "variable, else auto, the first GPU when one is visible)."
        ),
    ] = None,
) -> None:
    """Options for every command, given before it (``datadiet --device cpu study ...``)."""
    if device is None:
        return
    from datadiet._core.device import ENV, check_device_spec

    spec = check_device_spec(device.strip().lower(), where="--device")
    if spec.startswith("cuda"):  # refused now, not after the data is loaded (torch is imported only here)
        from datadiet._core.device import resolve_device

        try:
            resolve_device(spec)
        except ParameterError as exc:
            raise ParameterError(f"--device: {exc}") from None
    os.environ[ENV] = spec


@app.command()
@_friendly_errors
def select(
    budget: Annotated[str, typer.Option(help="Count (1200) or fraction in (0, 1] (0.3 -> floor(0.3 N)).")],
    out: Annotated[Path, typer.Option(help="Where to write selection.json.")],
    features: Annotated[
        Path | None, typer.Option(help="Representation (.npy): N x d, N x T or N x C x d.")
    ] = None,
    algorithm: Annotated[str | None, typer.Option(help="Selector name; see `datadiet algorithms`.")] = None,
    recipe: Annotated[
        str | None,
        typer.Option(help="A recipe (see `datadiet recipes`) instead of --algorithm; needs --run."),
    ] = None,
    run: Annotated[
        Path | None,
        typer.Option(help="A `datadiet represent` output folder: the recipe's representations, the data."),
    ] = None,
    export: Annotated[
        Path | None,
        typer.Option(help="Also write the kept rows in the input's format to this folder (needs --run)."),
    ] = None,
    labels: Annotated[Path | None, typer.Option(help="Labels (.npy or .txt), one per example.")] = None,
    val_features: Annotated[
        Path | None, typer.Option(help="Validation representation (.npy) for less.")
    ] = None,
    val_groups: Annotated[Path | None, typer.Option(help="Group id per validation row (.npy/.txt).")] = None,
    balance: Annotated[str, typer.Option(help="none | stratified | sqrt")] = "none",
    calibrate: Annotated[float | None, typer.Option(help="Share of the budget from the scores.")] = None,
    weighting: Annotated[str, typer.Option(help="With --calibrate: none | unbiased")] = "none",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    param: Annotated[
        list[str] | None, typer.Option(help="Selector parameter key=value (repeatable).")
    ] = None,
    engine: EngineOption = "local",
    ray_address: RayAddressOption = None,
    view: Annotated[
        str | None,
        typer.Option(help="View of an N x C x d gradient stack: flatten | checkpoint=<epoch> | lrmean."),
    ] = None,
) -> None:
    """Select a subset from a stored representation (or with a recipe) and write selection.json."""
    if recipe is not None:
        _select_recipe(
            recipe, run, parse_budget(budget), out, export, seed, algorithm=algorithm, features=features
        )
        return
    if algorithm is None or features is None:
        raise ParameterError("Pass --features and --algorithm, or --recipe NAME with --run FOLDER.")
    if export is not None and run is None:
        raise ParameterError(
            "--export needs --run FOLDER: the represent output whose data the selection indexes."
        )
    from datadiet.api import select as run_select
    from datadiet.representations.views import check_view
    from datadiet.selection.balancing import BALANCE_MODES
    from datadiet.selection.calibration import WEIGHTINGS

    check_option("--balance", balance, tuple(dict.fromkeys(("none", *BALANCE_MODES))))
    check_option("--weighting", weighting, tuple(WEIGHTINGS))
    if view is not None:  # refused before any file is read
        try:
            check_view(view)
        except ParameterError as exc:
            raise ParameterError(f"--view: {exc}") from None
    params = parse_params(param or [])
    if export is not None and run is not None:
        from datadiet.pipeline.prune import check_export, run_config

        check_export(run_config(run), export)  # before --out is written: a refused export writes nothing
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
            view=view,
            **params,
        )
    record = selection.to_dict()
    record["features"] = str(features)
    atomic_write_json(out, record)
    console.print(f"selected {selection.budget} of {len(values.values)} examples with {algorithm} -> {out}")
    if export is not None and run is not None:
        _export(run, selection, export)


def _select_recipe(
    recipe: str,
    run: Path | None,
    budget: int | float,
    out: Path,
    export: Path | None,
    seed: int,
    **other: Any,
) -> None:
    """``select --recipe``: the recipe on a represent output's representations, optionally exported."""
    given = [f"--{name}" for name, value in other.items() if value is not None]
    if given:
        raise ParameterError(f"--recipe fixes its own representation and selector; drop {given}.")
    if run is None:
        raise ParameterError(
            "--recipe needs --run FOLDER: a `datadiet represent` output (holds representations.json)."
        )
    from datadiet.pipeline.prune import check_export, run_recipe_inputs
    from datadiet.recipes import RECIPES, select_recipe

    chosen = RECIPES.get(recipe)
    stage, inputs = run_recipe_inputs(run)
    if export is not None:
        check_export(stage.cfg, export)  # before --out is written: a refused export writes nothing
    selection = select_recipe(chosen, inputs, budget, seed=seed)
    record = {**selection.to_dict(), "ids": [str(i) for i in stage.train.ids[selection.indices]]}
    atomic_write_json(out, record)
    console.print(
        f"selected {selection.budget} of {inputs.n_examples} examples with recipe {recipe} -> {out}"
    )
    if export is not None:
        _export(run, selection, export, stage=stage)


def _export(run: Path, selection: Any, folder: Path, stage: Any = None) -> None:
    """Write the kept rows of ``selection`` of the represent output ``run``'s data to ``folder``."""
    import warnings

    from datadiet.cli.prune import print_summary
    from datadiet.pipeline.prune import EmptyClassWarning, export_selection, run_config
    from datadiet.pipeline.reference import prepare

    stage = stage or prepare(run_config(run))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyClassWarning)  # said in the summary
        result = export_selection(stage.cfg, stage.train, selection, folder)
    print_summary(result.summary, result.files)


@contextlib.contextmanager
def engine_block(name: str, address: str | None) -> Iterator[None]:
    """Run the block's maps on the named engine (``local`` or ``ray``)."""
    from datadiet.distributed.engine import ENGINES, make_engine, use_engine

    check_option("--engine", name, tuple(ENGINES))
    if address is not None and name != "ray":
        raise ParameterError("--ray-address needs --engine ray.")
    with use_engine(make_engine(name, address=address)):
        yield


def load_features(path: Path, *, name: str) -> Any:
    """A ``.npy`` array, or a representation-store entry directory (validated against its manifest).

    A file inside a store entry is read as that entry (``values.npy``, with its provenance) or refused
    naming the entry folder to pass; a folder that is not an entry is refused saying what to pass.
    """
    from datadiet.representations.base import Representation

    if path.is_dir():
        return _load_entry(path, name=name)
    entry = _enclosing_entry(path)
    if entry is not None:
        if path.name == "values.npy" and (entry / "manifest.json").is_file():
            return _load_entry(entry, name=name)  # the entry, not its bare values: keep the provenance
        raise ParameterError(
            f"{name} '{path}' is a file inside the representation-store entry '{entry}'; pass the entry "
            f"folder instead: --{name.replace(' ', '-')} {entry}"
        )
    array = load_array(path, name=name, mmap=True)
    if array.dtype.kind not in "biufc":
        raise ParameterError(
            f"{name} file '{path}' holds {array.dtype} text, not numbers; it must be a numeric .npy "
            "(N x d): convert it, e.g. np.save('features.npy', np.loadtxt(path, delimiter=','))."
        )
    return Representation(array, kind="features")


def _enclosing_entry(path: Path) -> Path | None:
    """The store entry folder that holds the file ``path`` (complete or partial), if any."""
    from datadiet.store._io import MANIFEST, WRITER_SPEC
    from datadiet.store.keys import KEY_PATTERN

    folder = path.parent
    if KEY_PATTERN.fullmatch(folder.name) is None:
        return None
    return folder if (folder / MANIFEST).is_file() or (folder / WRITER_SPEC).is_file() else None


def _load_entry(folder: Path, *, name: str) -> Any:
    """The complete store entry ``folder``, or a ``ValueError`` saying what to pass instead."""
    from datadiet.store import RepresentationStore
    from datadiet.store._io import MANIFEST, WRITER_SPEC
    from datadiet.store.keys import KEY_PATTERN

    keyed = KEY_PATTERN.fullmatch(folder.name) is not None
    if not keyed or not (folder / MANIFEST).is_file():
        if keyed and (folder / WRITER_SPEC).is_file():
            raise FileNotFoundError(
                f"{name} '{folder}' is a partial representation-store entry (its write was interrupted); "
                "rerun the command that builds it (e.g. datadiet represent) to finish it."
            )
        raise ParameterError(
            f"{name} '{folder}' is a folder but not a representation-store entry (no manifest.json); pass "
            "a .npy file or an entry folder <store>/<key> (the paths `datadiet represent` lists)."
        )
    rep = RepresentationStore(folder.parent).load(folder.name)
    if rep is None:
        raise FileNotFoundError(f"{name} '{folder}' is not a complete representation-store entry.")
    return rep


def _reference_config(path: Path, output: Path | None) -> Any:
    """The reference config in ``path``, with ``output`` replaced when ``--output`` is given."""
    from datadiet.config import ReferenceConfig, load_config

    cfg = load_config(path, ReferenceConfig)
    return cfg if output is None else cfg.model_copy(update={"output": str(output)})


@app.command()
@_friendly_errors
def reference(
    config: Annotated[Path, typer.Option(help="YAML config (see docs/representations.md).")],
    output: OutputOption = None,
) -> None:
    """Train the reference model and record its training dynamics and checkpoints (resumable)."""
    from datadiet.pipeline.reference import run_reference

    run = run_reference(_reference_config(config, output))
    console.print(f"reference run ready in {run.run_dir}")


@app.command()
@_friendly_errors
def represent(
    config: Annotated[Path, typer.Option(help="YAML config (see docs/representations.md).")],
    output: OutputOption = None,
    engine: EngineOption = "local",
    ray_address: RayAddressOption = None,
) -> None:
    """Extract dynamics, hidden states and projected gradients into the store (cached, resumable)."""
    from datadiet.pipeline.represent import run_represent

    cfg = _reference_config(config, output)
    with engine_block(engine, ray_address):
        index = run_represent(cfg)
    table = Table(title="representations (use the path with `datadiet select --features`)")
    for column in ("name", "shape", "path"):
        table.add_column(column, overflow="fold")
    for rep_name, entry in index.items():
        where = Path(entry["path"]).parent if "key" in entry else Path(entry["path"])
        table.add_row(rep_name, "x".join(map(str, entry["shape"])), str(where))
    Console().print(table)


def read_selection(path: Path) -> Any:
    """The selection in a ``selection.json`` file, every field checked (see ``Selection.from_dict``)."""
    from datadiet.selection.base import Selection

    fix = "regenerate it with `datadiet select`"
    data = read_json_file(path, name="selection", fix=fix)
    return Selection.from_dict(data, where=f"selection file '{path}'")


def _common_size(paths: list[Path], loaded: list[Any]) -> int | None:
    """The ``n_examples`` shared by the selections (``None`` if none records it); refuse a mismatch."""
    sizes = [(path, sel.meta.get("n_examples")) for path, sel in zip(paths, loaded, strict=True)]
    known = [(path, n) for path, n in sizes if n is not None]
    for path, n in known[1:]:
        if n != known[0][1]:
            raise ParameterError(
                f"selection file '{path}' selects from n_examples={n} but '{known[0][0]}' from "
                f"n_examples={known[0][1]}; compare selections of the same dataset."
            )
    return known[0][1] if known else None


@app.command()
@_friendly_errors
def synthetic(
    out: Annotated[Path, typer.Option(help="Output directory.")],
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    epochs: Annotated[int, typer.Option(help="Reference-model epochs (trajectory length).")] = 100,
) -> None:
    """The 2D Gaussian-mixture study of Du et al.: figures, overlap.csv, selections.json."""
    from datadiet.experiments.synthetic.study import run_synthetic_study

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

    cfg = load_config(config, StudyConfig)  # every spec is checked here, before the heavy imports below
    from datadiet.pipeline.study import run_study

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
    check_option("--mode", mode, ("frozen", "lora", "full"))
    from datadiet.pipeline.demo import demo_config
    from datadiet.pipeline.study import run_study

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


# Commands that live in their own modules register on `app` when imported (they import the helpers above).
from datadiet.cli import commands as _commands  # noqa: E402, F401

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
