"""The `hpo` command line: parse, call the library, print. Errors become one line on stderr."""

from __future__ import annotations

import atexit
import functools
import gc
import os
import signal
import sys
import threading
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from hpo.errors import HpoError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

app = typer.Typer(
    help="Measured, reproducible Optuna studies of Keras training on CIFAR-100.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Help texts are plain: "[default: ...]" in them must not be read as markup and dropped.
    rich_markup_mode=None,
)
study_app = typer.Typer(
    help="Create, run and inspect studies.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(study_app, name="study")

_state: dict[str, Any] = {"debug": False, "on_interrupt": ""}
"""`debug`: tracebacks shown; `on_interrupt`: what the command's interrupted line adds."""
F = TypeVar("F", bound=Callable[..., Any])

StorageOption = Annotated[
    str | None,
    typer.Option(
        "--storage",
        help="Optuna storage URL [default: $HPO_STORAGE or "
        "sqlite:///studies/hpo.db]; also journal:PATH and redis://",
    ),
]


def handles_errors(command: F) -> F:
    """Turn an HpoError, or a storage's failure (a write refused, a server gone), into one
    line on stderr and exit code 2 (a traceback with --debug); Ctrl-C or SIGTERM into
    "interrupted" (with what the command adds) and exit code 130."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt:
            _stop_listening()
            typer.echo(f"interrupted{_state['on_interrupt']}", err=True)
            raise typer.Exit(130) from None
        except HpoError as err:
            if _state["debug"]:
                raise
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(2) from None
        except Exception as err:
            from hpo.storage import exception_chain, storage_failure, storage_url

            try:
                url = storage_url(kwargs.get("storage"))
            except HpoError:  # no URL to hide (an empty one): the error is another's
                url = ""
            failure = storage_failure(err, url)
            if _state["debug"] or failure is None:
                raise
            typer.echo(f"error: {failure}", err=True)
            # A write that failed while Ctrl-C was being handled still ends as an interrupt.
            interrupted = any(isinstance(e, KeyboardInterrupt) for e in exception_chain(err))
            if interrupted:
                _stop_listening()
            raise typer.Exit(130 if interrupted else 2) from None

    return wrapper  # type: ignore[return-value]


def check_workers(workers: int) -> None:
    """At least one worker, and no more than memory holds at what any worker holds (whatever
    the study's data: `run_workers` checks again with the study's own)."""
    if workers < 1:
        raise HpoError(f"--workers must be at least 1, got {workers}")
    if workers > 1:
        from hpo.workers import available_memory, check_memory

        check_memory(workers, available_memory())


def check_timeout(timeout: float | None) -> None:
    if timeout is not None and not timeout > 0:
        raise HpoError(f"--timeout must be a positive number of seconds, got {timeout:g}")


@app.callback()
def root(debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False) -> None:
    import optuna

    _state["debug"] = debug
    _state["on_interrupt"] = ""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # A process started in the background by a non-interactive shell inherits SIGINT ignored;
    # hpo's long commands promise that Ctrl-C (SIGINT) stops them cleanly, so take it back.
    # SIGTERM (a service manager, `kill`) stops every command as Ctrl-C does.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _interrupt)


@study_app.command("create")
@handles_errors
def create(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="A study spec (TOML).")],
    name: Annotated[str | None, typer.Option(help="Study name [default: the spec's].")] = None,
    storage: StorageOption = None,
) -> None:
    """Create a study from SPEC, storing the spec with it and enqueueing its named trials."""
    import dataclasses

    from hpo.secrets import mask
    from hpo.spec import NAME_RULE, is_study_name, load_spec
    from hpo.storage import storage_failure, storage_url, usual_storage
    from hpo.study import create_study

    if name is not None and not is_study_name(name):
        raise HpoError(f"--name {NAME_RULE}, got {name!r}")
    spec = load_spec(spec_path)
    if name:
        spec = dataclasses.replace(spec, name=name)
    url = storage_url(storage) if storage is not None else spec.storage or storage_url()
    try:
        study = create_study(spec, url)
    except HpoError:
        raise
    except Exception as err:  # named here: the URL may be the spec's
        failure = storage_failure(err, url)
        if failure is None:
            raise
        raise HpoError(failure) from err
    n_waiting = len(study.get_trials(deepcopy=False))
    typer.echo(f"created study '{spec.name}' in {mask(url)} ({n_waiting} enqueued trials)")
    if url != usual_storage():
        typer.echo(f"later commands need --storage {mask(url)} (or HPO_STORAGE)")


@study_app.command("run")
@handles_errors
def run(
    name: Annotated[str, typer.Argument(help="The study's name.")],
    n_trials: Annotated[
        int | None,
        typer.Option(
            help="Finished trials the study should hold in total [default: the spec's n_trials]."
        ),
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Stop starting trials after this many seconds.")
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Local CIFAR-100 (npz, cifar-100-python folder or .tar.gz) [default: $HPO_DATA, "
            "else the Keras download]."
        ),
    ] = None,
    storage: StorageOption = None,
    workers: Annotated[
        int,
        typer.Option(help="Worker processes on this machine, sharing the storage and the cores."),
    ] = 1,
    max_failures: Annotated[
        int, typer.Option(help="Stop after this many failed trials in a row (each worker).")
    ] = 10,
) -> None:
    """Run (or resume) a study until it holds N finished trials. Ctrl-C stops cleanly."""
    from hpo.storage import storage_url

    if n_trials is not None and n_trials < 1:
        raise HpoError(f"--n-trials must be at least 1, got {n_trials}")
    check_timeout(timeout)
    check_workers(workers)
    if max_failures < 1:
        raise HpoError(f"--max-failures must be at least 1, got {max_failures}")
    _run(name, n_trials, timeout, data, storage_url(storage), workers, max_failures)


def _run(
    name: str,
    n_trials: int | None,
    timeout: float | None,
    data: Path | None,
    url: str,
    workers: int,
    max_failures: int,
    resume: str = "",
) -> None:
    """Run study `name` to its total; on Ctrl-C or SIGTERM (`handles_errors` says it), say
    that `resume` (default `hpo study run NAME`) goes on with it."""
    after = _state["on_interrupt"]
    _state["on_interrupt"] = (
        ": the running trial was recorded as failed, finished trials are kept; "
        f"`{resume or f'hpo study run {name}{_storage_option(url)}'}` resumes"
    )
    if workers > 1:
        from hpo.workers import run_workers

        run_workers(name, url, n_trials, timeout, data, workers, typer.echo, max_failures)
    else:
        from hpo.runner import run_study

        run_study(
            name,
            url,
            n_trials,
            timeout,
            data,
            echo=typer.echo,
            debug=_state["debug"],
            max_failures=max_failures,
        )
    _state["on_interrupt"] = after


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _storage_option(url: str) -> str:
    """` --storage URL` (its password masked) for a command to repeat, where the storage is
    not the one commands use without the option."""
    from hpo.secrets import mask
    from hpo.storage import usual_storage

    return "" if url == usual_storage() else f" --storage {mask(url)}"


def _stop_listening() -> None:
    """Ignore Ctrl-C and SIGTERM from here on: the command is already stopping, and another
    signal would cut its last line short or turn its exit into a traceback."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


@study_app.command("list")
@handles_errors
def list_(storage: StorageOption = None) -> None:
    """List the studies in the storage."""
    from hpo.storage import open_storage, storage_url
    from hpo.summary import list_lines

    typer.echo("\n".join(list_lines(open_storage(storage_url(storage)))))


@study_app.command("show")
@handles_errors
def show(
    name: str,
    top: Annotated[int, typer.Option(min=1, help="How many of the best trials to list.")] = 10,
    storage: StorageOption = None,
) -> None:
    """Counts by state, the best trial with its params, and the top trials."""
    from hpo.storage import storage_url
    from hpo.study import load_study
    from hpo.summary import show_lines

    study, _ = load_study(name, storage_url(storage), heartbeat_interval=None)
    typer.echo("\n".join(show_lines(study, top)))


class ExportFormat(str, Enum):
    csv = "csv"
    json = "json"
    keras = "keras"


@study_app.command("export")
@handles_errors
def export(
    name: str,
    format: Annotated[ExportFormat, typer.Option("--format")] = ExportFormat.csv,
    out: Annotated[Path | None, typer.Option(help="File to write [default: stdout].")] = None,
    trial: Annotated[
        int | None, typer.Option(help="With --format keras: this trial [default: the best].")
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="With --format keras: a local CIFAR-100 for the split.")
    ] = None,
    storage: StorageOption = None,
) -> None:
    """Export every trial as CSV or JSON, or one trial as a standalone Keras script.

    --format keras writes a Python file that trains the trial (default: the best) with plain
    Keras and TensorFlow on CIFAR-100, with the study's split, scaling, model, optimizer,
    schedule, penalties, dropout, early stopping and seed; it reads the training labels to
    write the split.
    """
    from hpo.storage import check_not_storage, storage_url
    from hpo.study import load_study
    from hpo.summary import export_frame, export_json

    url = storage_url(storage)
    if out is not None:
        check_not_storage(out, url)
    study, spec = load_study(name, url, heartbeat_interval=None)
    if format == ExportFormat.keras:
        from hpo.export import export_trial

        text = export_trial(study, spec, trial, data)
    elif trial is not None:
        raise HpoError("--trial goes with --format keras; csv and json export every trial")
    elif data is not None:
        raise HpoError("--data goes with --format keras; csv and json read no image data")
    else:
        text = (
            export_json(study)
            if format == ExportFormat.json
            else export_frame(study).to_csv(index=False)
        )
    if out is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        try:
            out.write_text(text)
        except OSError as err:
            raise HpoError(f"cannot write {out}: {err.strerror or err}") from err
        typer.echo(f"wrote {out}")


@study_app.command("delete")
@handles_errors
def delete(
    name: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    storage: StorageOption = None,
) -> None:
    """Delete a study and all its trials, and its ablation (NAME:ablation) if it has one."""
    import optuna

    from hpo.secrets import mask
    from hpo.storage import open_storage, storage_url
    from hpo.study import ABLATION_SUFFIX, FIXED_ONLY, find_study, study_names, tally

    url = storage_url(storage)
    # Not `load_study`: a study whose stored spec no longer loads can still be deleted.
    study = find_study(name, url, heartbeat_interval=None)
    doomed = {name: tally(study).total()}
    # An ablation left behind would be taken for the ablation of a new study of this name.
    companion = name + ABLATION_SUFFIX
    store = open_storage(url, heartbeat_interval=None)
    if not name.endswith(ABLATION_SUFFIX) and companion in study_names(store):
        ablation = find_study(companion, url, heartbeat_interval=None)
        n_runs = tally(ablation).total()
        if ablation.user_attrs.get(FIXED_ONLY) or not n_runs:
            doomed[companion] = n_runs
        else:  # a study of its own under that name (made before the name was kept)
            typer.echo(f"kept study '{companion}': it is not an ablation ({n_runs} trials)")
    what = " and ".join(f"study '{k}' and its {n} trials" for k, n in doomed.items())
    if not yes and not typer.confirm(f"delete {what}?"):
        typer.echo("nothing deleted")
        raise typer.Exit(1)
    # An ablation's study keeps the stages it began: one planned anew runs the same seeds.
    of = name.removesuffix(ABLATION_SUFFIX)
    if (
        name.endswith(ABLATION_SUFFIX)
        and study.user_attrs.get(FIXED_ONLY)
        and of in study_names(store)
    ):
        from hpo.ablate import keep_stages

        keep_stages(optuna.load_study(study_name=of, storage=store), study)
    for key, n in reversed(doomed.items()):  # the ablation first: never left without its study
        optuna.delete_study(study_name=key, storage=store)
        typer.echo(f"deleted study '{key}' ({n} trials) from {mask(url)}")


@app.command("report")
@handles_errors
def report(
    name: Annotated[str, typer.Argument(help="The study's name.")],
    out: Annotated[
        Path | None,
        typer.Option(
            help="Markdown file [default: reports/NAME.md]; figures go in a folder beside it."
        ),
    ] = None,
    evaluate_test: Annotated[
        bool,
        typer.Option(
            "--evaluate-test",
            help="Retrain each technique's best configuration with K seeds and "
            "evaluate it once on the test set (stored, so later reports reuse it).",
        ),
    ] = False,
    seeds: Annotated[
        int | None,
        typer.Option(
            "--seeds", min=1, help="K, seeds per configuration [default: 3].", show_default=False
        ),
    ] = None,
    activations: Annotated[
        bool,
        typer.Option(
            "--activations",
            help="Draw activation histograms at initialization (loads the image data).",
        ),
    ] = False,
    note: Annotated[
        bool,
        typer.Option(
            "--note", help="Write the ranking into the storage as the study's dashboard note."
        ),
    ] = False,
    data: Annotated[
        Path | None, typer.Option(help="Local CIFAR-100 for --evaluate-test and --activations.")
    ] = None,
    storage: StorageOption = None,
) -> None:
    """Write a Markdown report that ranks each technique, with figures.

    Without options it only reads the storage and writes reports/NAME.md and its figures;
    --evaluate-test trains and writes results to the storage, --activations loads image data,
    --note writes the dashboard note.
    """
    from hpo.report.writer import write_report
    from hpo.storage import storage_url

    # An option that would change nothing is refused rather than silently ignored.
    if seeds is not None and not evaluate_test:
        raise HpoError("--seeds goes with --evaluate-test: only it trains configurations")
    if data is not None and not (evaluate_test or activations):
        raise HpoError(
            "--data goes with --evaluate-test or --activations: only they read image data"
        )
    if evaluate_test:
        _state["on_interrupt"] = (
            ": the test evaluations that finished are stored; the same command goes on from them"
        )
    path = write_report(
        name,
        storage_url(storage),
        out,
        evaluate_test=evaluate_test,
        n_seeds=3 if seeds is None else seeds,
        data_path=data,
        activations=activations,
        note=note,
        echo=typer.echo,
    )
    typer.echo(f"wrote {path}")


class Design(str, Enum):
    both = "both"
    leave_one_out = "leave-one-out"
    add_one_in = "add-one-in"


@app.command("ablate")
@handles_errors
def ablate(
    name: Annotated[str, typer.Argument(help="The finished study to ablate.")],
    seeds: Annotated[
        int | None,
        typer.Option(
            "--seeds",
            help="K, paired seeds per variant; more extends it [default: the ablation's own, "
            "else 10].",
            show_default=False,
        ),
    ] = None,
    design: Annotated[Design, typer.Option(help="Which comparisons to run.")] = Design.both,
    technique: Annotated[
        list[str] | None,
        typer.Option(help="Only this technique (or named experiment); repeatable."),
    ] = None,
    delta: Annotated[
        float | None,
        typer.Option(
            help="Margin of 'no effect', in accuracy points [default: the ablation's own, "
            "else 0.5]."
        ),
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="Local CIFAR-100 [default: $HPO_DATA, else download].")
    ] = None,
    storage: StorageOption = None,
    workers: Annotated[int, typer.Option(help="Worker processes on this machine.")] = 1,
    timeout: Annotated[
        float | None, typer.Option(help="Stop starting runs after this many seconds.")
    ] = None,
) -> None:
    """Train a paired, many-seed ablation of a finished study and print each verdict.

    Runs are trials of the study NAME:ablation in the same storage: Ctrl-C and a second call
    resume, --workers and other machines share them. Trains, and reads the test set to score
    each run after every choice was made on validation.
    """
    from hpo.ablate import (
        analyze_stored,
        collect_runs,
        load_ablation,
        prepare_ablation,
        verdict_lines,
    )
    from hpo.ablation import DESIGNS
    from hpo.storage import storage_url

    check_workers(workers)
    if delta is not None and not 0 < delta < 100:
        raise HpoError(f"--delta is in accuracy points and must be in (0, 100), got {delta}")
    check_timeout(timeout)
    url = storage_url(storage)
    designs = DESIGNS if design == Design.both else (design.value,)
    margin = None if delta is None else delta / 100
    again = f"hpo ablate {name}{_storage_option(url)}"
    _state["on_interrupt"] = f": finished runs are kept; `{again}` resumes"
    if data is not None:  # refused before anything is planned or stored
        from hpo.data import resolve_source
        from hpo.study import load_study

        resolve_source(load_study(name, url, heartbeat_interval=None)[1].data, data)
    companion, plan, n_runs = prepare_ablation(
        name, url, seeds, designs, technique, margin, echo=typer.echo
    )
    typer.echo(
        f"ablation of '{name}': {len(plan.variants)} variants x {n_runs // len(plan.variants)} "
        f"seeds = {n_runs} runs, {len(plan.comparisons)} comparisons "
        f"(study '{companion.study_name}')"
    )
    _run(companion.study_name, None, timeout, data, url, workers, 10, again)
    _, _, seeds_used = load_ablation(name, url)  # type: ignore[misc]
    runs = collect_runs(companion.get_trials(deepcopy=False))
    analysis = analyze_stored(companion, plan, seeds_used, runs)
    typer.echo("\n".join(verdict_lines(analysis)))


@app.command("dashboard")
@handles_errors
def dashboard(
    name: Annotated[str | None, typer.Argument(help="Study to open [default: all].")] = None,
    storage: StorageOption = None,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to serve on (0 picks a free one).")] = 8080,
) -> None:
    """Serve the storage's studies in optuna-dashboard until Ctrl-C."""
    from hpo.dashboard import serve
    from hpo.storage import storage_url

    serve(storage_url(storage), host=host, port=port, name=name, echo=typer.echo)


def main() -> None:
    """Run the command line. A usage error (an unknown option, a value of the wrong type) is one
    line on stderr naming the problem, exit code 2, like every other error."""
    # While the interpreter shuts down, its collections walk every object left (0.4-0.8 s of
    # CPU after a 10,000-trial report, most of it the libraries') to free memory the exit
    # frees anyway: frozen, they skip them. What only a collection would have finalized is
    # left to the exit: globals of modules held in cycles (most modules), with their
    # `__del__` methods and unflushed buffers. hpo writes its files with `with`, commits what
    # it stores, and closes its storages' connections in an exit handler (`hpo.storage`).
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        sys.exit(1)
    except typer.TyperException as err:
        message = err.format_message()
        if type(err).__name__ == "NoArgsIsHelpError":
            # A group named without a command: its help, on stdout as `--help` prints it
            # (rich output has printed it already, and the message is then empty).
            if message:
                typer.echo(message)
        else:
            context = getattr(err, "ctx", None)
            hint = f" (see '{context.command_path} --help')" if context is not None else ""
            typer.echo(f"error: {message.rstrip('.')}{hint}", err=True)
        sys.exit(err.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
