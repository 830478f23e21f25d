"""The study spec (TOML): load it, validate every key once, and hold it in frozen dataclasses."""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import inspect
import math
import re
import tomllib
import unicodedata
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from hpo.errors import SpecError
from hpo.registry import (
    PRUNERS,
    SAMPLERS,
    accepted_args,
    grid_sizes,
    make_pruner,
    make_sampler,
    never_prunes,
)
from hpo.space import KNOBS, Knob, Param, ParamValue, complete_params

METRICS = {"val_accuracy": "maximize", "val_loss": "minimize"}

MAX_NAME = 128
NAME_RULE = (
    f"must be 1-{MAX_NAME} characters without spaces, control characters or '/', "
    "and not '.' or '..'"
)
MAX_SEED = 2**32 - 1
"""The largest seed a NumPy random state takes: scikit-learn's `random_state`, Optuna's samplers."""

# TOML's names for the Python types a spec's values arrive as, in the order to test them
# (a bool is an int to isinstance).
_TOML_TYPES: dict[type, str] = {
    bool: "a boolean",
    int: "an integer",
    float: "a float",
    str: "a string",
    list: "an array",
    Mapping: "a table",
}

# Arguments Optuna checks only once trials have run (TPE after its start-up trials, Hyperband
# when it makes its brackets, with `max_resource = "auto"` once a trial completes): the least
# each may be, checked at load so that the study's workers do not each fail on it.
_LEAST: dict[tuple[str, str], int] = {
    ("tpe", "n_startup_trials"): 0,
    ("tpe", "n_ei_candidates"): 1,
    ("tpe", "prior_weight"): 0,
    ("hyperband", "min_resource"): 1,
    ("hyperband", "reduction_factor"): 2,
}

# The types a spec may give a sampler's or pruner's argument, by the words of its annotation
# (`dict[str, Any]` reads as `dict`). Other words (Callable, BaseSampler) name types TOML
# cannot spell.
_ANNOTATED: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "str": (str,),
    "list": (list,),
    "Sequence": (list,),
    "dict": (Mapping,),
    "Mapping": (Mapping,),
}


def _alternatives(annotation: str) -> list[str]:
    """The alternatives of a union annotation, split at its top-level `|` only:
    `dict[str, int | float] | None` is `dict[str, int | float]` and `None`."""
    alternatives, depth, start = [], 0, 0
    for at, char in enumerate(annotation):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "|" and depth == 0:
            alternatives.append(annotation[start:at].strip())
            start = at + 1
    return [*alternatives, annotation[start:].strip()]


def _spellable(alternative: str) -> bool:
    """Whether TOML can spell a value of this type: `list[float]` and `dict[str, Any]` yes,
    `list[FrozenTrial]` (an array of what no spec can write) no."""
    names = re.findall(r"[A-Za-z_][\w.]*", alternative)
    return all(name in _ANNOTATED or name in ("Any", "None") for name in names)


def _largest(param: Param) -> float:
    """The largest value an int knob's param can take."""
    if isinstance(param, IntDistribution):
        return param.high
    if isinstance(param, CategoricalDistribution):
        return max(float(c) for c in param.choices)  # type: ignore[arg-type]
    return float(param)  # type: ignore[arg-type]


SYNTHETIC_ONLY = ("n_samples", "n_classes", "image_size")
"""[data] keys that shape the synthetic images only."""


@dataclass(frozen=True)
class DataSpec:
    """Where the images come from and how they are split and scaled."""

    dataset: str = "cifar100"
    validation_fraction: float = 0.1
    n_train: int | None = None
    n_validation: int | None = None
    scaling: str = "rescale"
    seed: int = 0
    n_samples: int = 3000
    n_classes: int = 10
    image_size: int = 8


@dataclass(frozen=True)
class Component:
    """A sampler or pruner: its registry name and constructor arguments."""

    type: str
    args: Mapping[str, Any] = field(default_factory=dict)


# What a spec without a [sampler] or [pruner] table gets: the strategy that found good
# configurations in the fewest epochs in the anytime search benchmark (docs/search.md).
DEFAULT_SAMPLER = Component(
    "tpe", {"multivariate": True, "group": True, "constant_liar": True, "n_startup_trials": 5}
)
DEFAULT_PRUNER = Component("median", {"n_startup_trials": 5, "n_warmup_steps": 5})


@dataclass(frozen=True)
class Enqueued:
    """A named trial that runs before any sampled one, with every searched knob set."""

    name: str
    params: Mapping[str, ParamValue]


@dataclass(frozen=True)
class Spec:
    """A validated study spec."""

    name: str
    source: str
    text: str
    description: str = ""
    seed: int = 0
    storage: str | None = None
    n_trials: int | None = None
    metric: str = "val_accuracy"
    direction: str = "maximize"
    data: DataSpec = DataSpec()
    sampler: Component = DEFAULT_SAMPLER
    pruner: Component = DEFAULT_PRUNER
    space: Mapping[str, Param] = field(default_factory=dict)
    enqueue: tuple[Enqueued, ...] = ()
    artifact_dir: str | None = None
    keep_weights: bool = False

    def searched(self) -> dict[str, BaseDistribution]:
        """The knobs this study searches, with their distributions."""
        return {k: v for k, v in self.space.items() if isinstance(v, BaseDistribution)}

    def epochs_budget(self) -> int:
        """The most epochs any trial of this study may run."""
        return int(_largest(self.space.get("epochs", KNOBS["epochs"].default)))


def load_spec(path: str | Path) -> Spec:
    """Read and validate the spec file at `path`."""
    path = Path(path)
    try:
        # utf-8-sig: a file saved with a byte-order mark (some Windows editors) reads as TOML.
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SpecError(f"spec file {path} does not exist") from None
    except OSError as err:
        raise SpecError(f"cannot read spec file {path}: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise SpecError(
            f"spec file {path} is not UTF-8 text ({err.reason} at byte {err.start})"
        ) from err
    return load_spec_text(text, str(path))


def load_spec_text(text: str, source: str = "<spec>", stored: bool = False) -> Spec:
    """Validate the spec given as TOML text; `source` names it in error messages.

    A `stored` spec is one a study already holds: it passed the checks of the hpo that made
    the study, and its trials must stay readable, so the checks added since (argument types,
    the trial in memory, the seeds' upper bound) are left to new specs.
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{source} is not valid TOML: {err}") from err
    except RecursionError as err:
        raise SpecError(f"{source} nests arrays or tables too deeply to read") from err
    except ValueError as err:  # an integer of thousands of digits: Python's limit on them
        raise SpecError(f"{source} is not valid TOML: {err}") from err
    huge = _beyond_64_bits(raw)
    if huge is not None:
        # TOML's integers are 64-bit; Python's parser takes any, and they fail later as floats.
        raise SpecError(f"{source} holds an integer beyond 64 bits: {str(huge)[:20]}...")
    return _Validator(source, stored).spec(raw, text)


def _beyond_64_bits(value: Any) -> int | None:
    """The first integer in the parsed TOML `value` that 64 bits cannot hold, if any."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if not -(2**63) <= value < 2**63 else None
    children = (
        value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    )
    for child in children:
        found = _beyond_64_bits(child)
        if found is not None:
            return found
    return None


class _Validator:
    """Checks one spec, naming its source, the key and the rule in every error."""

    def __init__(self, source: str, stored: bool = False) -> None:
        self.source = source
        self.stored = stored

    def fail(self, message: str) -> SpecError:
        return SpecError(f"{message} in {self.source}")

    def keys(self, table: Mapping[str, Any], allowed: set[str], where: str) -> None:
        for key in table:
            if key not in allowed:
                hint = difflib.get_close_matches(key, sorted(allowed), n=1)
                also = f" (did you mean '{hint[0]}'?)" if hint else ""
                raise self.fail(f"unknown key '{key}' in {where}{also}")

    def table(self, raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        value = raw.get(key, {})
        if not isinstance(value, Mapping):
            raise self.fail(f"[{key}] must be a table, got {value!r}")
        return value

    def typed(self, value: Any, kind: type | tuple[type, ...], where: str) -> Any:
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool)):
            return value
        shown = str(value).lower() if isinstance(value, bool) else repr(value)
        raise self.fail(f"{where} must be {_describe(kinds)}, got {_toml_type(value)} {shown}")

    def seed(self, value: Any, where: str) -> int:
        seed: int = self.typed(value, int, where)
        if not self.stored and not 0 <= seed <= MAX_SEED:
            raise self.fail(f"{where} must be in [0, 2**32 - 1], got {seed}")
        return seed

    def spec(self, raw: Mapping[str, Any], text: str) -> Spec:
        top = {
            "name",
            "description",
            "seed",
            "storage",
            "n_trials",
            "data",
            "objective",
            "sampler",
            "pruner",
            "params",
            "enqueue",
            "artifact_dir",
            "keep_weights",
        }
        self.keys(raw, top, "the spec")
        if "name" not in raw:
            raise self.fail("missing key 'name'")
        name = self.typed(raw["name"], str, "'name'")
        if not is_study_name(name) and not self.stored:  # the rule has grown since some studies
            raise self.fail(f"'name' {NAME_RULE}, got {name!r}")
        n_trials = raw.get("n_trials")
        if n_trials is not None and self.typed(n_trials, int, "'n_trials'") < 1:
            raise self.fail(f"'n_trials' must be >= 1, got {n_trials}")
        metric, direction = self.objective(self.table(raw, "objective"))
        space = self.space(self.table(raw, "params"))
        sampler = self.sampler(self.table(raw, "sampler"), space)
        spec = Spec(
            name=name,
            source=self.source,
            text=text,
            description=self.typed(raw.get("description", ""), str, "'description'"),
            seed=self.seed(raw.get("seed", 0), "'seed'"),
            storage=self.storage(raw.get("storage")),
            n_trials=n_trials,
            metric=metric,
            direction=direction,
            data=self.data(self.table(raw, "data")),
            sampler=sampler,
            pruner=self.pruner(self.table(raw, "pruner"), "[pruner]"),
            space=space,
            enqueue=self.enqueue(raw.get("enqueue", []), space),
            artifact_dir=self.typed(raw.get("artifact_dir"), (str, type(None)), "'artifact_dir'"),
            keep_weights=self.typed(raw.get("keep_weights", False), bool, "'keep_weights'"),
        )
        self.buildable(spec)
        if not self.stored:
            if spec.keep_weights and not spec.artifact_dir:
                raise self.fail(
                    "keep_weights = true stores each trial's weights in artifact_dir, which the "
                    "spec does not set"
                )
            self.fits_the_cnn(spec)
            if "pruner" in raw:  # the default is left to act where it can
                self.can_prune(spec)
        return spec

    def can_prune(self, spec: Spec) -> None:
        """A pruner the spec names must be able to prune a trial of its longest budget."""
        longest = spec.epochs_budget()
        why = never_prunes(spec.pruner.type, spec.pruner.args, longest - 1)
        if why is not None:
            raise self.fail(
                f"[pruner] (type {spec.pruner.type!r}) can prune no trial of at most {longest} "
                f'epochs: {why}; use type "none" for no pruning'
            )

    def fits_the_cnn(self, spec: Spec) -> None:
        """A CNN halves its images twice: synthetic images under 4 pixels leave it nothing
        to pool, and every trial would fail in Keras."""
        architecture = spec.space.get("architecture", KNOBS["architecture"].default)
        possible = (
            architecture.choices
            if isinstance(architecture, CategoricalDistribution)
            else (architecture,)
        )
        small = spec.data.dataset == "synthetic" and spec.data.image_size < 4
        if "cnn" in possible and small:
            raise self.fail(
                f"architecture 'cnn' pools its images twice and needs [data] image_size >= 4, "
                f"got {spec.data.image_size}"
            )

    def buildable(self, spec: Spec) -> None:
        """Build the sampler and pruner once: their constructors check the values the names
        passed (a missing argument, one out of range), which would otherwise fail each later
        command that loads the study."""
        sampler, pruner = spec.sampler, spec.pruner
        parts = (
            (
                "[sampler]",
                sampler,
                lambda: make_sampler(sampler.type, sampler.args, spec.seed, spec.searched()),
            ),
            ("[pruner]", pruner, lambda: make_pruner(pruner.type, pruner.args)),
        )
        built = [self.checked(where, part, build) for where, part, build in parts]
        if self.stored:
            return
        # Some values pass the constructors and fail at the first trial (Hyperband's
        # max_resource = 0): run one trial through both, in memory.
        study = _study_in_memory(spec.direction, *built)
        trial = self.checked("[sampler]", sampler, lambda: study.ask(dict(spec.searched())))
        self.checked("[pruner]", pruner, lambda: (trial.report(0.5, 1), trial.should_prune()))

    def checked(self, where: str, part: Component, step: Callable[[], Any]) -> Any:
        """`step()`, its value errors turned into one line naming the sampler or pruner."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return step()
        except (TypeError, ValueError, ArithmeticError) as err:
            text = str(err).strip()
            message = text.splitlines()[0] if text else repr(err)
            raise self.fail(f"{where} (type {part.type!r}): {message}") from err

    def objective(self, table: Mapping[str, Any]) -> tuple[str, str]:
        self.keys(table, {"metric", "direction"}, "[objective]")
        metric = self.typed(table.get("metric", "val_accuracy"), str, "[objective] metric")
        if metric not in METRICS:
            raise self.fail(f"[objective] metric must be one of {sorted(METRICS)}, got {metric!r}")
        direction = table.get("direction", METRICS[metric])
        if direction != METRICS[metric]:
            raise self.fail(
                f"[objective] direction for {metric} must be {METRICS[metric]}, got {direction!r}"
            )
        return metric, direction

    def data(self, table: Mapping[str, Any]) -> DataSpec:
        defaults = DataSpec()
        self.keys(table, set(DataSpec.__dataclass_fields__), "[data]")
        values = {k: table.get(k, getattr(defaults, k)) for k in DataSpec.__dataclass_fields__}
        if values["dataset"] not in ("cifar100", "synthetic"):
            raise self.fail(
                f"[data] dataset must be 'cifar100' or 'synthetic', got {values['dataset']!r}"
            )
        if values["scaling"] not in ("rescale", "standardize"):
            raise self.fail(
                f"[data] scaling must be 'rescale' or 'standardize', got {values['scaling']!r}"
            )
        fraction = self.typed(
            values["validation_fraction"], (int, float), "[data] validation_fraction"
        )
        if not 0 < fraction < 1:
            raise self.fail(f"[data] validation_fraction must be in (0, 1), got {fraction}")
        synthetic_only = [k for k in SYNTHETIC_ONLY if k in table]
        if values["dataset"] == "cifar100" and synthetic_only and not self.stored:
            raise self.fail(
                f"[data] {synthetic_only[0]} shapes the synthetic images and CIFAR-100 would "
                "ignore it (50,000 training images, 32x32, 100 classes): set dataset = "
                '"synthetic" for those images, or remove it (n_train takes fewer CIFAR-100 images)'
            )
        for key in ("n_train", "n_validation", "n_samples", "n_classes", "image_size"):
            if values[key] is not None and self.typed(values[key], int, f"[data] {key}") < 2:
                raise self.fail(f"[data] {key} must be >= 2, got {values[key]}")
        self.seed(values["seed"], "[data] seed")
        return DataSpec(**values)

    def sampler(self, table: Mapping[str, Any], space: Mapping[str, Param]) -> Component:
        if not table:
            return Component(DEFAULT_SAMPLER.type, dict(DEFAULT_SAMPLER.args))
        self.typed_table(table, "[sampler]", SAMPLERS, DEFAULT_SAMPLER)
        name, args = self.component(table, SAMPLERS, "[sampler]", "tpe")
        if "seed" in args and not self.stored:
            self.seed(args["seed"], "[sampler] seed")
        if name == "cmaes" and importlib.util.find_spec("cmaes") is None:
            raise self.fail("[sampler] type 'cmaes' needs the cmaes package: pip install cmaes")
        if name in ("grid", "bruteforce") and not self.stored:
            searched = {k: v for k, v in space.items() if isinstance(v, BaseDistribution)}
            try:
                # Optuna lists the whole grid, but a brute-force search each knob's values.
                grid_sizes(searched, f"{name} search", whole=name == "grid")
            except ValueError as err:
                raise self.fail(f"[sampler] {err}") from err
        return Component(name, args)

    def pruner(self, table: Mapping[str, Any], where: str) -> Component:
        if not table and where == "[pruner]":
            return Component(DEFAULT_PRUNER.type, dict(DEFAULT_PRUNER.args))
        self.typed_table(
            table, where, PRUNERS, DEFAULT_PRUNER if where == "[pruner]" else Component("median")
        )
        name, args = self.component(table, PRUNERS, where, "median")
        if name == "patient":
            if not isinstance(args.get("wrapped"), Mapping):
                raise self.fail(f"{where} type 'patient' needs a table 'wrapped' naming a pruner")
            args["wrapped"] = dict(
                self.pruner(args["wrapped"], f"{where} wrapped").args,
                type=args["wrapped"].get("type", "median"),
            )
        return Component(name, args)

    def typed_table(
        self, table: Mapping[str, Any], where: str, registry: Mapping[str, Any], default: Component
    ) -> None:
        """A table without `type` would take Optuna's defaults for hpo's default type, not
        hpo's own defaults (what leaving a [sampler] or [pruner] out gives): a new spec must
        name it."""
        if "type" in table or self.stored:  # a stored spec keeps the meaning it ran with
            return
        self.keys(table, accepted_args(registry, default.type), f"{where} (type {default.type!r})")
        sets = f"sets {', '.join(repr(k) for k in sorted(table))}" if table else "is empty"
        start = f'type = "{default.type}" starts from Optuna\'s defaults'
        if not default.args:  # a pruner's wrapped table: nothing to leave out
            raise self.fail(f"{where} {sets} but no type: name the pruner ({start})")
        settings = ", ".join(f"{k} = {str(v).lower()}" for k, v in default.args.items())
        raise self.fail(
            f"{where} {sets} but no type: name one ({start}; hpo's, which a spec without the "
            f"table gets, are {default.type} with {settings})"
        )

    def component(
        self, table: Mapping[str, Any], registry: Mapping[str, Any], where: str, default: str
    ) -> tuple[str, dict[str, Any]]:
        name = self.typed(table.get("type", default), str, f"{where} type")
        if name not in registry:
            raise self.fail(f"{where} type must be one of {sorted(registry)}, got {name!r}")
        args = {k: v for k, v in table.items() if k != "type"}
        allowed = accepted_args(registry, name) | ({"wrapped"} if name == "patient" else set())
        self.keys(args, allowed, f"{where} (type {name!r})")
        if not self.stored:
            self.arguments(registry[name], args, where)
            for key, value in args.items():
                least = _LEAST.get((name, key))
                if least is None or not isinstance(value, int | float):
                    continue
                if not (math.isfinite(value) and value >= least):
                    raise self.fail(
                        f"{where} {key} must be a finite number >= {least}, got {value}"
                    )
        return name, args

    def arguments(
        self, constructor: Callable[..., Any], args: Mapping[str, Any], where: str
    ) -> None:
        """Check each argument's type against its annotation: Optuna keeps most arguments
        unchecked and fails on them only once a study runs."""
        for key, parameter in inspect.signature(constructor).parameters.items():
            if key not in args or parameter.annotation is inspect.Parameter.empty:
                continue
            annotation = parameter.annotation
            if not isinstance(annotation, str):
                annotation = inspect.formatannotation(annotation)
            alternatives = _alternatives(annotation)
            if "Any" in alternatives:
                continue
            kinds = tuple(
                kind
                for alternative in alternatives
                if _spellable(alternative)
                for kind in _ANNOTATED.get(alternative.split("[")[0].strip(), ())
            )
            if not kinds:
                raise self.fail(
                    f"{where} {key} cannot be set in a spec (Optuna takes {annotation})"
                )
            self.typed(args[key], kinds, f"{where} {key}")

    def space(self, table: Mapping[str, Any]) -> dict[str, Param]:
        self.keys(table, set(KNOBS), "[params]")
        space = {name: self.param(name, KNOBS[name], value) for name, value in table.items()}
        for name in space:
            self.check_reachable(name, space)
        layers = space.get("n_layers", KNOBS["n_layers"].default)
        if "units" in space and _largest(layers) < 2 and not self.stored:
            raise self.fail(
                "[params] units sets the hidden layers after the first, but n_layers can only "
                "be 1: remove units, or allow n_layers of 2 or more"
            )
        return space

    def param(self, name: str, knob: Knob, value: Any) -> Param:
        where = f"[params] {name}"
        if not isinstance(value, Mapping):
            return self.value(knob, value, where)
        if "choices" in value:
            self.keys(value, {"choices"}, where)
            choices = value["choices"]
            if not isinstance(choices, list) or not choices:
                raise self.fail(f"{where} choices must be a non-empty list, got {choices!r}")
            values = [self.value(knob, c, where) for c in choices]
            twice = next((v for i, v in enumerate(values) if v in values[:i]), None)
            if twice is not None and not self.stored:
                raise self.fail(f"{where} choices list {twice!r} twice")
            return CategoricalDistribution(values)
        if knob.kind not in ("float", "int"):
            raise self.fail(f"{where} is {knob.kind}: search it with `choices`, not a range")
        self.keys(value, {"low", "high", "log", "step"}, where)
        if "low" not in value or "high" not in value:
            raise self.fail(f"{where} needs both `low` and `high` (or `choices`)")
        low = float(self.value(knob, value["low"], where))
        high = float(self.value(knob, value["high"], where))
        if low > high:
            raise self.fail(f"`low <= high` must hold for '{name}', got low={low} high={high}")
        log = self.typed(value.get("log", False), bool, f"{where} log")
        step = value.get("step")
        if step is not None:
            step = self.typed(step, int if knob.kind == "int" else (int, float), f"{where} step")
            if not step > 0:
                raise self.fail(f"{where} step must be > 0, got {step}")
        if log and step is not None:
            raise self.fail(f"{where} cannot have both `log` and `step`")
        if log and low <= 0:
            raise self.fail(f"{where} with `log = true` needs low > 0, got low={low}")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                if knob.kind == "int":
                    low, high = int(low), int(high)
                    dist: Param = IntDistribution(low, high, log=log, step=int(step or 1))
                else:
                    dist = FloatDistribution(
                        low, high, log=log, step=None if step is None else float(step)
                    )
        except (ValueError, ArithmeticError) as err:  # a step too fine for Optuna's decimals
            raise self.fail(f"{where} step {step} is out of reach: {type(err).__name__}") from err
        if caught and not self.stored:
            # Optuna would lower `high` to the last whole step, with a warning on every load.
            raise self.fail(
                f"{where} step {step} must divide high - low, got low={low} high={high}"
            )
        return dist

    def storage(self, value: Any) -> str | None:
        url = self.typed(value, (str, type(None)), "'storage'")
        if url is not None and not url.strip() and not self.stored:
            # Falling back to the default would put the study in another storage than meant.
            raise self.fail("'storage' must not be blank: give a storage URL, or leave it out")
        return url

    def value(self, knob: Knob, value: Any, where: str) -> ParamValue:
        if knob.kind == "bool":
            return bool(self.typed(value, bool, where))
        if knob.kind == "categorical":
            if value not in knob.choices:
                raise self.fail(f"{where} must be one of {list(knob.choices)}, got {value!r}")
            return value
        value = self.typed(value, int if knob.kind == "int" else (int, float), where)
        if self.stored and knob.stored_low is not None:
            knob = dataclasses.replace(knob, low=knob.stored_low, open_low=True)
        above = value < knob.high if knob.open_high else value <= knob.high
        below = value > knob.low if knob.open_low else value >= knob.low
        if not (below and above) or (knob.kind == "float" and not math.isfinite(value)):
            left, right = "(" if knob.open_low else "[", ")" if knob.open_high else "]"
            raise self.fail(f"{where} must be in {left}{knob.low}, {knob.high}{right}, got {value}")
        return float(value) if knob.kind == "float" else int(value)

    def check_reachable(self, name: str, space: Mapping[str, Param]) -> None:
        """A conditional knob in the spec must be selectable by what its parent may take."""
        knob = KNOBS[name]
        if knob.parent is None:
            return
        parent = space.get(knob.parent, KNOBS[knob.parent].default)
        possible = parent.choices if isinstance(parent, CategoricalDistribution) else (parent,)
        if not set(possible) & set(knob.when):
            raise self.fail(
                f"'{name}' only applies when {knob.parent} is one of {list(knob.when)}, "
                f"but {knob.parent} can only be {list(possible)}"
            )
        self.check_reachable(knob.parent, space)

    def enqueue(self, entries: Any, space: Mapping[str, Param]) -> tuple[Enqueued, ...]:
        if not isinstance(entries, list):
            raise self.fail(
                f"[[enqueue]] must be an array of tables, got {_toml_type(entries)} {entries!r}"
            )
        searched = {k: v for k, v in space.items() if isinstance(v, BaseDistribution)}
        result, names = [], set()
        for i, entry in enumerate(entries):
            where = f"[[enqueue]] #{i + 1}"
            self.typed(entry, Mapping, where)
            self.keys(entry, {"name", "params"}, where)
            if "name" not in entry:
                raise self.fail(f"{where} needs a 'name'")
            name = self.typed(entry["name"], str, f"{where} name")
            if not name.strip() and not self.stored:
                raise self.fail(f"{where} name must not be blank, got {name!r}")
            if name in names:
                raise self.fail(f"{where} name {name!r} is used twice")
            names.add(name)
            given = self.typed(entry.get("params", {}), Mapping, f"{where} params")
            for key in given:
                if key not in searched:
                    raise self.fail(
                        f"{where} ({name}) sets '{key}', which the spec does not search; "
                        "only searched knobs can differ between enqueued trials"
                    )
            params = complete_params(given, space)
            for key, value in given.items():
                if self.stored:
                    break
                if key not in params:
                    parent = str(KNOBS[key].parent)
                    found = params.get(parent, space.get(parent, KNOBS[parent].default))
                    now = "" if isinstance(found, BaseDistribution) else f" (here {found!r})"
                    raise self.fail(
                        f"{where} ({name}) sets '{key}', which only applies when {parent} "
                        f"is one of {list(KNOBS[key].when)}{now}: set {parent} so, or leave "
                        f"'{key}' out"
                    )
                self.value(KNOBS[key], value, f"{where} ({name}) '{key}'")
            for key, value in params.items():
                if not _contains(searched[key], value):
                    raise self.fail(
                        f"{where} ({name}) value {value!r} for '{key}' is outside its "
                        f"distribution {searched[key]}"
                    )
            result.append(Enqueued(name, params))
        return tuple(result)


def _study_in_memory(direction: str, sampler: Any, pruner: Any) -> optuna.Study:
    """A throwaway study in memory, made without Optuna's log line about it."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.create_study(direction=direction, sampler=sampler, pruner=pruner)  # type: ignore[arg-type]
    finally:
        optuna.logging.set_verbosity(verbosity)


def is_study_name(name: str) -> bool:
    """Whether `name` can name a study: its report is written to reports/NAME.md, and a command
    line must be able to spell it (no control characters)."""
    return (
        0 < len(name) <= MAX_NAME
        and name not in (".", "..")  # reports/./ and reports/../ are folders, not names
        and not any(c.isspace() or c == "/" or unicodedata.category(c) == "Cc" for c in name)
    )


def _toml_type(value: Any) -> str:
    """What `value` is in TOML's words: "an array", "a table", "a string"..."""
    for kind, name in _TOML_TYPES.items():
        if isinstance(value, kind):
            return name
    return f"a {type(value).__name__}"  # TOML's dates and times


def _describe(kinds: tuple[type, ...]) -> str:
    """The types in `kinds` in TOML's words, as a rule states them: "a string or an integer"."""
    words = _TOML_TYPES | {float: "a number"}
    shown = [k for k in kinds if k is not type(None) and not (k is int and float in kinds)]
    return " or ".join(words.get(k, k.__name__) for k in shown)


def _contains(dist: BaseDistribution, value: Any) -> bool:
    """Whether `value` is one `dist` can suggest (through public attributes only)."""
    if isinstance(dist, CategoricalDistribution):
        # 1 == True in Python; a spec's true is not the choice 1.
        return any(
            value == c and isinstance(value, bool) == isinstance(c, bool) for c in dist.choices
        )
    if isinstance(dist, FloatDistribution | IntDistribution):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if not dist.low <= value <= dist.high:
            return False
        if dist.step is not None:
            steps = (value - dist.low) / dist.step
            return abs(steps - round(steps)) < 1e-8
        return not isinstance(dist, IntDistribution) or float(value).is_integer()
    return False
