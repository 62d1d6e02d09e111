"""Typed configs read from YAML: dataclasses with a docstring per field, validated on load.

``load_config(path, ReferenceConfig)`` reads YAML with the safe loader and builds the dataclass,
refusing unknown keys (listing the valid ones, with a "did you mean"), wrong types, NaN/inf and numbers out
of range with the path of the offending field, e.g. "model.lora.r must be an int. Got 'eight' instead." or
"training.batch_size must be an int in the range [1, inf). Got 0 instead." A field's range is its
``metadata=_range(...)``.

Everything read from a config is bounded before anything is built from it: the file (at most
:data:`MAX_CONFIG_BYTES`), its YAML once aliases are expanded (:data:`MAX_EXPANDED`, :data:`MAX_DEPTH`:
an alias bomb is refused in milliseconds), every string (:data:`MAX_TEXT`), every int (64 bits) and the
free-form ``params`` of a selection (JSON values only, :data:`MAX_PARAM_ITEMS`, :data:`MAX_PARAM_DEPTH`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import yaml

from datadiet.errors import ConfigError, ParameterError

if TYPE_CHECKING:
    from datadiet.data.dataset import Dataset

T = TypeVar("T")

MAX_CONFIG_BYTES = 2**20
"""Largest config file read (1 MiB)."""
MAX_EXPANDED = 2 * MAX_CONFIG_BYTES
"""Largest YAML document once its aliases are expanded: one per node plus one per scalar character."""
MAX_DEPTH = 32
"""Deepest nesting of a config's YAML (aliases expanded) and of the values given to ``from_dict``."""
MAX_TEXT = 4096
"""Longest string in a config (a path may be up to 4096 bytes long)."""
MAX_PARAM_ITEMS = 10_000
"""Most values (list items and mapping entries, nested ones included) in one selection's ``params``."""
MAX_PARAM_DEPTH = 8
"""Deepest nesting of one selection's ``params``."""
INT_LIMIT = 2**63
"""Every int in a config lies in [-2**63, 2**63)."""
BASELINES = ("full", "random", "dummy")
"""Names of the study's baselines, reserved: no selection may take them."""


def _did_you_mean(name: object, options: typing.Iterable[object]) -> str:
    from datadiet._core.checks import did_you_mean

    return did_you_mean(name, [str(option) for option in options])


def _range(low: float, high: float = math.inf, *, low_open: bool = False, high_open: bool = True) -> dict:
    """Field metadata: the value (each item, for a list; ``None`` passes) must lie in this range."""
    return {"range": (low, high, low_open, high_open)}


@dataclass
class DatasetConfig:
    source: str = "reuters_r8"
    """Embedded dataset name (reuters_r8, newsgroups20, rotten_tomatoes, winogrande, xsum) or a
    jsonl/csv/parquet/HF path."""
    task: Literal["classification", "multiple_choice", "generation"] = "classification"
    """Task of a file source (embedded datasets carry their own): generation reads ``text`` -> ``target``,
    multiple choice reads ``text``, ``choices`` and the correct option's index in ``label``."""
    train_split: str = "train"
    """Split used to train the reference model and to select from."""
    val_split: str | None = "validation"
    """Split whose gradients LESS matches against (None: no validation representations)."""
    slice: int | None = field(default=None, metadata=_range(1))
    """Keep a stratified, seeded slice of this many training examples (None: all)."""
    val_slice: int | None = field(default=None, metadata=_range(1))
    """Likewise for the validation split."""
    seed: int = field(default=0, metadata=_range(0))
    """Seed of the slicing."""
    text: str = "text"
    """Text column (file sources)."""
    text_pair: str | None = None
    """Second text column for pair tasks (file sources)."""
    label: str = "label"
    """Label column (file sources)."""
    id: str | None = None
    """Id column (file sources); None numbers the rows."""
    choices: str = "choices"
    """Options column (file sources, multiple choice)."""
    target: str = "target"
    """Target text column (file sources, generation)."""
    label_noise: float = field(default=0.0, metadata=_range(0, 1))
    """Flip this fraction of the training labels (seeded, recorded) to study robustness."""
    noise_seed: int = field(default=0, metadata=_range(0))
    """Seed of the label flips."""

    def load(self, **overrides: Any) -> dict[str, Dataset]:
        """Every split of ``source`` with these column settings (``overrides`` go to ``load_dataset``).

        An error about the data names the config key to set (``dataset.label``, ``dataset.id``, ...), not
        the ``load_dataset`` argument: the key as the YAML spells it, e.g. ``reference.dataset.label`` in
        a study config.
        """
        from datadiet.data.dataset import DatasetError
        from datadiet.data.loaders import load_dataset

        columns = {"choices": self.choices} if self.task == "multiple_choice" else {}
        if self.task == "generation":
            columns = {"target": self.target}
        try:
            return load_dataset(
                self.source, text=self.text, text_pair=self.text_pair, label=self.label, id=self.id,
                task=self.task, **columns, **overrides,
            )  # fmt: skip
        except DatasetError as exc:
            raise DatasetError(_as_config_hint(str(exc), getattr(self, "_where", "dataset"))) from None
        except FileNotFoundError as exc:
            where = getattr(self, "_where", "dataset")
            raise FileNotFoundError(
                f"{where}.source: {exc} Set {where}.source to an existing file or folder, or to one of "
                "those names."
            ) from None


_LOADER_HINTS = (  # what load_dataset says -> what a config's user does instead ({w}: the dataset key)
    (r"Pass (\w+)=<one of them> to load_dataset\.", r"Set {w}.\1 to one of them."),
    (r"Pass label_names=\[\.\.\.\] to load_dataset listing every class\.",
     "Every class must occur in the train split ({w}.train_split): add examples of those classes there, "
     "or drop those rows."),
    (r"leave id=None\.", "set {w}.id: null (rows are then numbered)."),
    (r" or pass file_format=\.", " (set {w}.source to such a file)."),
)  # fmt: skip


def _as_config_hint(message: str, where: str) -> str:
    """A ``load_dataset`` error with its argument hints turned into the config keys to set."""
    for pattern, replacement in _LOADER_HINTS:
        message = re.sub(pattern, replacement.replace("{w}", where), message)
    return message


@dataclass
class LoraConfig:
    r: int = field(default=8, metadata=_range(1))
    """LoRA rank."""
    alpha: int = field(default=16, metadata=_range(1))
    """LoRA scaling alpha."""
    dropout: float = field(default=0.0, metadata=_range(0, 1))
    """LoRA dropout."""


@dataclass
class ModelConfig:
    path: str = "embedded"
    """A local Hugging Face model directory, or "embedded" for the packaged MiniLM."""
    mode: Literal["frozen", "lora", "full"] = "frozen"
    """frozen: cached encoder embeddings + trained head (fast CPU path); lora/full: fine-tune the encoder."""
    head: Literal["linear", "mlp"] = "linear"
    """Head of the frozen path."""
    lora: LoraConfig = field(default_factory=LoraConfig)
    """LoRA settings (mode: lora)."""
    max_length: int = field(default=128, metadata=_range(2))
    """Tokens per example (generation: prompt + target; the prompt is truncated first)."""
    max_new_tokens: int = field(default=48, metadata=_range(1))
    """Generation: tokens generated per example at evaluation (greedy decoding)."""


@dataclass
class TrainingConfig:
    epochs: int = field(default=5, metadata=_range(1))
    """Epochs of reference training (= trajectory length T)."""
    batch_size: int = field(default=16, metadata=_range(1))
    """Training batch size."""
    eval_batch_size: int = field(default=64, metadata=_range(1))
    """Batch size of the per-epoch evaluation pass and of hidden-state extraction."""
    lr: float | None = field(default=None, metadata=_range(0, low_open=True))
    """Peak learning rate; None: 1e-2 for the frozen head, 5e-5 for fine-tuning."""
    weight_decay: float = field(default=0.01, metadata=_range(0))
    """AdamW weight decay."""
    warmup_ratio: float = field(default=0.1, metadata=_range(0, 1, high_open=False))
    """Share of steps with linear warm-up."""
    seed: int = field(default=0, metadata=_range(0))
    """Seed of initialisation, shuffling and dropout."""
    checkpoint_epochs: list[int] | None = field(default=None, metadata=_range(1))
    """Epochs whose weights and Adam state are kept (None: the first min(5, epochs))."""
    record_in_training: bool = False
    """Also record the training-pass probabilities (cartography's logit source)."""


@dataclass
class GradientConfig:
    dim: int = field(default=1024, metadata=_range(1))
    """Projection dimension."""
    seed: int = field(default=0, metadata=_range(0))
    """Projection seed (the same projection for every checkpoint)."""
    adam: bool = True
    """Adam-precondition training gradients with each checkpoint's optimizer state (LESS)."""
    target: Literal["auto", "lora", "classifier", "linear"] = "auto"
    """Which Linear layers' gradients represent an example; auto: what the model trains."""
    batch_size: int | None = field(default=None, metadata=_range(1))
    """Examples per extraction pass. It runs a backward pass, so its memory is about a training step's
    (SmolLM2 at 192 tokens: ~0.7 GB per example); None: training.batch_size."""


@dataclass
class RepresentConfig:
    kinds: list[Literal["dynamics", "hidden", "gradients"]] = field(
        default_factory=lambda: ["dynamics", "hidden", "gradients"]
    )
    """Representation kinds to extract."""
    hidden_stages: list[Literal["pretrained", "early", "final"]] = field(
        default_factory=lambda: ["pretrained", "early", "final"]
    )
    """Hidden states from the pretrained model, the first kept checkpoint and the final model."""
    gradients: GradientConfig = field(default_factory=GradientConfig)
    """Per-sample gradient settings."""
    store: str | None = None
    """Representation store directory (None: <output>/store)."""


@dataclass
class ReferenceConfig:
    output: str = "runs/reference"
    """Run directory: reference run, store and exported representations."""
    run_dir: str | None = None
    """An existing finished reference run to read instead of training one (e.g. recorded in your own
    transformers.Trainer run by datadiet.training.hf_trainer.DatadietCallback)."""
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    """What to train on."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Reference model."""
    training: TrainingConfig = field(default_factory=TrainingConfig)
    """Reference training."""
    represent: RepresentConfig = field(default_factory=RepresentConfig)
    """Representations to extract (datadiet represent)."""


@dataclass
class SelectionSpec:
    algorithm: str
    """A registered selector (``datadiet algorithms``)."""
    representation: str
    """A name from representations.json: dynamics/prob, dynamics/loss, hidden/final, gradients/train, ..."""
    name: str | None = None
    """Display name; default algorithm@representation plus the balance/calibration suffix."""
    params: dict[str, Any] = field(default_factory=dict)
    """The selector's own parameters."""
    balance: Literal["none", "stratified"] = "none"
    """Label balancing."""
    calibrate: float | None = field(default=None, metadata=_range(0, 1, high_open=False))
    """Share of the budget taken by the scores (score-based selectors); the rest is uniform random."""
    weighting: Literal["none", "unbiased"] = "none"
    """With calibrate: importance weights on the random part, used as training weights."""
    val_representation: str | None = None
    """Validation representation (less); default gradients/val."""

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        suffix = ("+balanced" if self.balance == "stratified" else "") + (
            f"+cal{self.calibrate:g}" if self.calibrate is not None else ""
        )
        return f"{self.algorithm}@{self.representation}{suffix}"


@dataclass
class MainConfig:
    epochs: int | None = field(default=None, metadata=_range(1))
    """Epochs of main-model training on each subset; None: 20 for the frozen head, 3 for fine-tuning."""
    head: Literal["linear", "mlp"] | None = None
    """Frozen path: the main model's head (None: the reference's)."""
    batch_size: int = field(default=32, metadata=_range(1))
    """Batch size."""
    lr: float | None = field(default=None, metadata=_range(0, low_open=True))
    """Peak learning rate; None: 1e-2 for the frozen head, 5e-5 for fine-tuning."""
    weight_decay: float = field(default=0.01, metadata=_range(0))
    """AdamW weight decay."""
    warmup_ratio: float = field(default=0.1, metadata=_range(0, 1, high_open=False))
    """Share of steps with linear warm-up."""


@dataclass
class OodConfig:
    source: str
    """Dataset name or path of the out-of-distribution evaluation set (same label names)."""
    split: str = "test"
    """Its split."""


@dataclass
class StudyConfig:
    output: str = "runs/study"
    """Study directory: the reference run, store, cells, results and report."""
    reference: ReferenceConfig = field(default_factory=ReferenceConfig)
    """Dataset, reference model, its training and the representations (its output is ignored)."""
    selections: list[SelectionSpec] = field(default_factory=list)
    """The selections to compare; random, full data and dummy are always added."""
    budgets: list[float] = field(
        default_factory=lambda: [0.05, 0.15, 0.3, 0.5, 0.7],
        metadata=_range(0, 1, low_open=True, high_open=False),
    )
    """Budget fractions."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata=_range(0))
    """Seeds: each cell selects and trains with its seed."""
    main: MainConfig = field(default_factory=MainConfig)
    """Main-model training on each subset (same model kind as the reference)."""
    test_split: str = "test"
    """Split the main model is evaluated on."""
    test_slice: int | None = field(default=None, metadata=_range(1))
    """Evaluate on a seeded stratified slice of this many test examples (None: all)."""
    ood: OodConfig | None = None
    """Optional out-of-distribution evaluation set."""
    metrics: list[Literal["accuracy", "macro_f1", "rouge1", "rouge2", "rougeL"]] | None = None
    """Metrics of every evaluation; None: accuracy and macro_f1 (classification, multiple choice) or
    rouge1, rouge2 and rougeL (generation)."""
    primary_metric: Literal["accuracy", "macro_f1", "rouge1", "rouge2", "rougeL"] | None = None
    """Metric of the report's table and significance flags; None: macro_f1, accuracy (multiple choice) or
    rougeL (generation)."""


def budget_text(budget: float) -> str:
    """A budget as cell ids and selection file names spell it: unique for every distinct float.

    Two decimals when they are exact (``0.3`` -> ``0.30``: the names of existing study folders), else the
    shortest spelling that reads back as the same float (``0.301``, ``0.001``), so ``float(text) == budget``
    always holds and two distinct budgets never share a name.

    >>> budget_text(0.3), budget_text(1.0), budget_text(0.301), budget_text(0.0001)
    ('0.30', '1.00', '0.301', '0.0001')
    """
    budget = float(budget)
    short = f"{budget:.2f}"
    return short if float(short) == budget else repr(budget)


def cell_id(name: str, budget: float, seed: int) -> str:
    """A study cell's id and file name, ``<name>__b<budget>__s<seed>`` (see :func:`budget_text`).

    >>> cell_id("less@gradients/train", 0.3, 0), cell_id("random", 0.301, 1)
    ('less@gradients_train__b0.30__s0', 'random__b0.301__s1')
    """
    from datadiet._core.files import safe_name

    return safe_name(f"{name}__b{budget_text(budget)}__s{seed}")


def selection_file(name: str, budget: float, seed: int) -> str:
    """Where a study saves a cell's selection, relative to the study folder.

    >>> selection_file("hard_to_learn@dynamics/prob", 0.5, 0)
    'selections/hard_to_learn@dynamics_prob/b0.50_s0.json'
    """
    from datadiet._core.files import safe_name

    return f"selections/{safe_name(name)}/b{budget_text(budget)}_s{seed}.json"


def check_selection_names(selections: list[SelectionSpec], where: str = "selections") -> None:
    """Refuse selection names that a baseline takes, that repeat, or that share a file name.

    A selection's name (its ``name``, else its default label ``algorithm@representation...``) names its
    results rows, its cell files and its selections folder: ``full``, ``random`` and ``dummy`` are the
    baselines' (the report would average the selection into them), and two names whose file names are
    equal up to case would overwrite each other's files (on a case-insensitive file system too).
    """
    from datadiet._core.files import safe_name

    taken: dict[str, str] = {safe_name(name).casefold(): f"the {name!r} baseline" for name in BASELINES}
    seen: dict[str, str] = {}
    for i, spec in enumerate(selections):
        label, at = spec.label, f"{where}[{i}]" + (".name" if spec.name else "")
        if label.strip().casefold() in BASELINES:
            raise ConfigError(
                f"{at} is {label!r}, the name of a baseline ({', '.join(BASELINES)} are reserved: the "
                f"study always adds them). Give the selection another 'name'."
            )
        if label in seen:
            raise ConfigError(
                f"Selection names must be unique: {at} and {seen[label]} are both {label!r}. Give one of "
                "them another 'name'."
            )
        file = safe_name(label).casefold()
        if file in taken:
            raise ConfigError(
                f"{at} {label!r} and {taken[file]} are unique but map to the same file name "
                f"{safe_name(label)!r}; give them names that differ in more than case, in letters, digits "
                "or '_.@+-' (other characters become '_')."
            )
        seen[label], taken[file] = at, f"{at} {label!r}"


def load_config(path: str | Path, cls: type[T]) -> T:
    """Read a YAML file into the dataclass ``cls`` (see :func:`from_dict`).

    Refused before anything is built: a file over :data:`MAX_CONFIG_BYTES`, bytes that are not UTF-8
    (naming the byte offset), YAML that is malformed, has a key twice in one mapping, or expands past
    :data:`MAX_EXPANDED` / :data:`MAX_DEPTH` through its aliases. Errors name the file.
    """
    path = Path(path)
    data = read_yaml(path)
    try:
        return from_dict(cls, {} if data is None else data)
    except ConfigError as exc:
        raise ConfigError(f"config file '{path}': {exc}") from None


def read_yaml(path: Path) -> Any:
    """The data of the YAML file ``path``, bounded and checked (see :func:`load_config`)."""
    if not path.is_file():
        if path.exists():
            raise ConfigError(f"config file '{path}' is not a regular file; give the path of a YAML file.")
        raise FileNotFoundError(f"config file '{path}' does not exist.")
    with path.open("rb") as handle:
        raw = handle.read(MAX_CONFIG_BYTES + 1)
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"config file '{path}' is larger than {MAX_CONFIG_BYTES} bytes (1 MiB); a config lists settings, "
            "not data: point dataset.source at the data instead."
        )
    text = _decode(raw, path)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is None:
            return None
        _check_yaml_tree(node, path)
        loader = yaml.SafeLoader("")
        try:
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except ConfigError:
        raise
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file '{path}' is not valid YAML ({_yaml_reason(exc)}).") from None
    except RecursionError:
        raise ConfigError(
            f"config file '{path}' is nested too deeply to read (more than {MAX_DEPTH} levels)."
        ) from None
    except (ValueError, TypeError) as exc:  # e.g. an int of more than 4300 digits, a bad timestamp
        raise ConfigError(f"config file '{path}' holds a value YAML cannot read ({exc}).") from None


def _decode(raw: bytes, path: Path) -> str:
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"config file '{path}' is not valid UTF-8: byte 0x{raw[exc.start]:02x} at byte offset "
            f"{exc.start} (line {line}) {exc.reason}. Re-encode it as UTF-8 (e.g. iconv -f latin1 -t utf-8)."
        ) from None


def _yaml_reason(exc: yaml.YAMLError) -> str:
    """One line: where (line, column) and what."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if mark is None or problem is None:
        return " ".join(str(exc).split())
    context = getattr(exc, "context", None)
    what = f"{context}: {problem}" if context else problem
    return f"line {mark.line + 1}, column {mark.column + 1}: {' '.join(what.split())}"


def _check_yaml_tree(root: yaml.Node, path: Path) -> None:
    """Refuse a key given twice in one mapping, and a tree that aliases expand past the limits.

    Aliases share nodes, so the expanded size and depth are computed once per node (children first):
    linear in the file, however far the aliases would expand. An alias to its own ancestor is a cycle.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in size:
            continue
        children = _children(node, path)
        if not children_done:
            if key in open_nodes:
                raise ConfigError(
                    f"config file '{path}' line {node.start_mark.line + 1}: an alias refers to a node that "
                    "contains it (a cycle); write the values out instead."
                )
            open_nodes.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in size)
            continue
        open_nodes.discard(key)
        own = 1 + (len(node.value) if isinstance(node, yaml.ScalarNode) else 0)
        size[key] = min(MAX_EXPANDED + 1, own + sum(size[id(child)] for child in children))
        depth[key] = 1 + max((depth[id(child)] for child in children), default=0)
        if size[key] > MAX_EXPANDED or depth[key] > MAX_DEPTH:
            raise ConfigError(
                f"config file '{path}' line {node.start_mark.line + 1}: this value, once its YAML aliases "
                f"(*name) are expanded, is larger than {MAX_EXPANDED} nodes and characters or deeper than "
                f"{MAX_DEPTH} levels; write the values out instead of nesting aliases."
            )


def _children(node: yaml.Node, path: Path) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if not isinstance(node, yaml.MappingNode):
        return []
    seen: set[tuple[str, str]] = set()
    for key, _ in node.value:
        if isinstance(key, yaml.ScalarNode) and key.value != "<<":
            if (key.tag, key.value) in seen:
                raise ConfigError(
                    f"config file '{path}' line {key.start_mark.line + 1}: key {key.value!r} appears twice "
                    "in one mapping (YAML would keep only the last); keep one."
                )
            seen.add((key.tag, key.value))
    return [child for pair in node.value for child in pair]


def from_dict(cls: type[T], data: Any, where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, refusing unknown keys, wrong types, NaN/inf and out-of-range
    numbers; each error names the field's path (``selections[2].name``)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'the config'} must be a mapping. Got {type(data).__name__} instead.")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted((key for key in data if key not in names), key=str)
    if unknown:
        raise ConfigError(
            f"Unknown key(s) {unknown[:5]} in {where or 'the config'}. Valid: {names}."
            + _did_you_mean(unknown[0], names)
        )
    required = [f.name for f in dataclasses.fields(cls) if _required(f) and f.name not in data]
    if required:
        raise ConfigError(f"{where or 'the config'} has no key {required[0]!r}; it is required.")
    values = {}
    for item in dataclasses.fields(cls):
        if item.name in data:
            path = f"{where}.{item.name}" if where else item.name
            values[item.name] = _coerce(hints[item.name], data[item.name], path)
            _check_range(item, values[item.name], path)
    config = cls(**values)
    config._where = where or "the config"  # type: ignore[attr-defined]  # its YAML key, for messages
    _check_fields_together(config, where)
    return config


def _required(item: dataclasses.Field) -> bool:
    return item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING


def to_dict(config: Any) -> dict[str, Any]:
    """The resolved config as plain data (to write next to outputs, so a run can be replayed).

    Refuses a NaN or infinite number anywhere (a dataclass built by hand bypasses :func:`from_dict`), so
    the JSON written from it is always valid.
    """
    data = dataclasses.asdict(config)
    bad = _non_finite(data, "")
    if bad is not None:
        raise ConfigError(f"{bad[0]} is {bad[1]!r}; every number in a config must be finite.")
    return data


def dumps_strict(data: Any, *, what: str) -> str:
    """``data`` as the indented JSON datadiet writes, refusing NaN/inf (which JSON cannot hold) and naming
    ``what`` is being written and the field."""
    try:
        return json.dumps(data, indent=1, allow_nan=False) + "\n"
    except ValueError:
        bad = _non_finite(data, "")
        if bad is None:
            raise
        field = bad[0] or "its value"
        raise ParameterError(
            f"Refusing to write {what}: {field} is {bad[1]!r}, not a finite number."
        ) from None


def _non_finite(value: Any, where: str) -> tuple[str, float] | None:
    """The path and value of the first NaN or infinite float in ``value`` (None when there is none)."""
    stack = [(value, where)]
    while stack:
        item, at = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return at, item
        if isinstance(item, dict):
            stack.extend((v, f"{at}.{k}" if at else str(k)) for k, v in reversed(item.items()))
        elif isinstance(item, list | tuple):
            stack.extend((v, f"{at}[{i}]") for i, v in reversed(list(enumerate(item))))
    return None


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        return _coerce(options[0], value, where) if len(options) == 1 else value
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin is Literal:
        if isinstance(value, list | dict) or value not in args:
            raise ConfigError(
                f"{where} must be one of {list(args)}. Got {_show(value)} instead."
                + _did_you_mean(value, args)
            )
        return value
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"{where} must be a mapping with string keys. Got {_show(value)} instead.")
        _check_free_form(value, where)
        return dict(value)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list. Got {_show(value)} instead.")
        return [_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    return _scalar(hint, value, where)


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, list | dict) or len(value) < 50 else type(value).__name__
    return text if len(text) <= 80 else text[:77] + "..."


def _scalar(hint: Any, value: Any, where: str) -> Any:
    if hint is float and isinstance(value, str) and len(value) <= 64:  # YAML 1.1 reads 5e-5 as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ConfigError(f"{where} must be a finite number. Got {value!r} instead.")
        return float(value)
    if hint in (int, str, bool, float) and not (
        isinstance(value, hint) and not (hint is int and isinstance(value, bool))
    ):
        raise ConfigError(f"{where} must be {_article(hint)}. Got {_show(value)} instead.")
    if hint is int and not -INT_LIMIT <= value < INT_LIMIT:
        raise ConfigError(f"{where} must be an int of at most 64 bits. Got {_show(value)} instead.")
    if hint is str:
        _check_text(value, where)
    return value


def _check_text(value: str, where: str) -> None:
    if len(value) > MAX_TEXT:
        raise ConfigError(f"{where} is {len(value)} characters long; a config string has at most {MAX_TEXT}.")
    if "\x00" in value:
        raise ConfigError(f"{where} contains a NUL character, which no name or path may hold. Remove it.")


def _check_free_form(params: dict[str, Any], where: str) -> None:
    """Free-form values (a selection's ``params``): JSON values only, finite, bounded in size and depth."""
    count = 0
    stack: list[tuple[Any, str, int]] = [(params, where, 0)]
    while stack:
        value, at, depth = stack.pop()
        count += 1
        if count > MAX_PARAM_ITEMS or depth > MAX_PARAM_DEPTH:
            raise ConfigError(
                f"{where} holds more than {MAX_PARAM_ITEMS} values or nests deeper than {MAX_PARAM_DEPTH} "
                "levels; a selector's parameters are a few numbers, strings and short lists."
            )
        if isinstance(value, dict):
            bad = [key for key in value if not isinstance(key, str)]
            if bad:
                raise ConfigError(f"{at} must have string keys. Got the key {_show(bad[0])} instead.")
            for key in value:
                _check_text(key, f"{at} key {key[:20]!r}")
            stack.extend((item, f"{at}.{key}", depth + 1) for key, item in value.items())
        elif isinstance(value, list | tuple):
            stack.extend((item, f"{at}[{i}]", depth + 1) for i, item in enumerate(value))
        elif isinstance(value, float):
            _scalar(float, value, at)
        elif isinstance(value, str):
            _check_text(value, at)
        elif isinstance(value, int) and not isinstance(value, bool):
            _scalar(int, value, at)
        elif value is not None and not isinstance(value, bool):
            raise ConfigError(
                f"{at} must be a number, string, true/false, null, list or mapping. Got {_show(value)} "
                f"({type(value).__name__}) instead; quote it to pass a string."
            )


def _check_range(item: dataclasses.Field, value: Any, where: str) -> None:
    """Refuse a number outside the field's range (metadata set by :func:`_range`)."""
    if "range" not in item.metadata or value is None:
        return
    low, high, low_open, high_open = item.metadata["range"]
    for i, number in enumerate(value if isinstance(value, list) else [value]):
        too_low = number <= low if low_open else number < low
        too_high = number >= high if high_open else number > high
        if too_low or too_high or math.isnan(number):  # NaN fails every comparison
            interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
            at = f"{where}[{i}]" if isinstance(value, list) else where
            kind = "an int" if isinstance(number, int) else "a number"
            raise ConfigError(f"{at} must be {kind} in the range {interval}. Got {number!r} instead.")


def _check_fields_together(config: Any, where: str) -> None:
    """Checks that involve two fields of one section."""
    if isinstance(config, TrainingConfig) and config.checkpoint_epochs is not None:
        late = [e for e in config.checkpoint_epochs if e > config.epochs]
        if late:
            at = f"{where}.checkpoint_epochs" if where else "checkpoint_epochs"
            raise ConfigError(
                f"{at} must hold epochs in [1, epochs={config.epochs}]. Got {late} instead; "
                "lower them or raise epochs."
            )
    if isinstance(config, StudyConfig):
        _check_study(config, f"{where}." if where else "")


NINE_DECIMALS = " (equal to 9 decimals, the precision the report pairs budgets at)"


def _check_study(config: StudyConfig, prefix: str) -> None:
    """A study's budgets and seeds are each listed once (and at least one); its selection names are free."""
    for key, values, same in (
        ("budgets", config.budgets, lambda b: round(b, 9)),  # the report pairs budgets at 9 decimals
        ("seeds", config.seeds, lambda s: s),
    ):
        if not values:
            raise ConfigError(f"{prefix}{key} is empty; list at least one.")
        first: dict[Any, int] = {}
        for i, value in enumerate(values):
            j = first.setdefault(same(value), i)
            if j != i:
                raise ConfigError(
                    f"{prefix}{key}[{i}] = {value!r} repeats {prefix}{key}[{j}] = {values[j]!r}"
                    + (NINE_DECIMALS if value != values[j] else "")
                    + f"; list each of the {key} once."
                )
    check_selection_names(config.selections, f"{prefix}selections")


def _article(hint: type) -> str:
    return {int: "an int", str: "a string", bool: "true or false", float: "a number"}[hint]
