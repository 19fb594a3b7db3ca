"""The `dcond` command: one Typer app whose commands are thin wrappers over the stage functions."""

import os
import signal
import sys
from contextlib import contextmanager

import typer
from typer.core import TyperArgument, TyperCommand

from dcond import __version__
from dcond.cli.artifacts import evaluate_cmd, inspect_cmd, verify_cmd
from dcond.cli.condense import sample_cmd, select_cmd, synthesize_cmd
from dcond.cli.labels import compress_labels_cmd, import_labels_cmd, relabel_cmd
from dcond.cli.pipeline import run_cmd
from dcond.cli.train import train_student_cmd, train_teacher_cmd
from dcond.errors import DcondError
from dcond.log import prefix as log_prefix


class _Command(TyperCommand):
    """Help that reads like a command line: flags without a value type, values by kind, repeatable options
    marked (Typer would print Python types: `--force <bool>`, `--teacher <list[Path]>`, `--crop-scale
    <float,float>...`)."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            if param.param_type_name == "option" and param.metavar is None:
                param.metavar = "" if param.is_flag else _kind(param.display_type(ctx), param.multiple)
            elif isinstance(param, TyperArgument):  # Typer builds its arguments itself; only their help differs
                param.__class__ = _Argument
        return params


class _Argument(TyperArgument):
    """An argument whose help shows its kind of value (`PATH`), where Typer would print `<path>`."""

    def display_type_rich(self, ctx) -> str:
        return _kind(self.display_type(ctx), False)


_KINDS = {"int": "N", "int range": "N", "float": "X", "str": "TEXT", "path": "PATH", "Path": "PATH"}


def _kind(typer_type: str, repeatable: bool) -> str:
    """'<list[Path]>' -> 'PATH (repeatable)', '<float,float>' -> 'X X', '<int>' -> 'N'."""
    inner = typer_type.strip("<>").removeprefix("list[").removesuffix("]")
    kind = " ".join(_KINDS.get(part, part.upper()) for part in inner.split(","))
    return f"{kind} (repeatable)" if repeatable else kind


app = typer.Typer(name="dcond", help="Dataset condensation as a chain of stages over artifact folders.",
                  add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False)
for name, command in (("train-teacher", train_teacher_cmd), ("synthesize", synthesize_cmd), ("select", select_cmd),
                      ("sample", sample_cmd), ("relabel", relabel_cmd), ("compress-labels", compress_labels_cmd),
                      ("import-labels", import_labels_cmd), ("train-student", train_student_cmd),
                      ("evaluate", evaluate_cmd), ("inspect", inspect_cmd), ("verify", verify_cmd),
                      ("run", run_cmd)):
    app.command(name, cls=_Command)(command)


def _version(value: bool) -> None:
    if value:
        print(__version__)
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Dataset condensation as a chain of stages over artifact folders."""


def _fail(message: str, code: int) -> None:
    print(f"{log_prefix()}error: {message}", file=sys.stderr)
    sys.exit(code)


class _Stopped(BaseException):
    """Ctrl-C (SIGINT), or SIGTERM as batch schedulers send at a time limit and torchrun sends to the other
    workers when one fails. Not a KeyboardInterrupt: Typer turns that into a return value, and the exit code 0."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _stop(signum, frame) -> None:
    for stopping in (signal.SIGINT, signal.SIGTERM):  # a second signal must not cut the clean-up short
        signal.signal(stopping, signal.SIG_IGN)
    raise _Stopped(signum)


@contextmanager
def _stopping_cleanly():
    """Unwind on SIGINT and SIGTERM, so that a stage's writer keeps a resumable work folder and removes any other
    (SIGTERM's default would kill the process and leave a half-built folder behind). A signal the process was
    started with ignored (a background job's SIGINT) stays ignored; the handlers are restored on the way out."""
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    for signum, default in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL)):
        if previous[signum] is default:
            signal.signal(signum, _stop)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main() -> None:
    """Entry point: errors become one line on stderr and a non-zero exit (DCOND_DEBUG=1 shows the traceback)."""
    debug = os.environ.get("DCOND_DEBUG") == "1"
    with _stopping_cleanly():
        try:
            code = app(prog_name="dcond", standalone_mode=False)
            if isinstance(code, int):  # a typer.Exit raised inside a command comes back as a value, not an exception
                sys.exit(code)
        except _Stopped as e:
            _fail("interrupted" if e.signum == signal.SIGINT else "terminated", 128 + e.signum)
        except typer.Abort:
            _fail("interrupted", 130)
        except DcondError as e:
            if debug:
                raise
            _fail(str(e), 1)
        except OSError as e:  # the file system said no (permissions, a full disk, a name too long): not a bug
            if debug:
                raise
            _fail(f"{e.strerror or e}: {e.filename}" if e.filename else str(e), 1)
        except Exception as e:
            if _is_usage_error(e):
                ctx = getattr(e, "ctx", None)
                hint = f" (see '{ctx.command_path} --help')" if ctx else ""
                _fail(e.format_message().replace("\n", " ") + hint, e.exit_code)
            if debug:
                raise
            # unexpected: a bug in dcond, not the user's doing; still one line, and marked as such
            detail = " ".join(str(e).split())[:300]
            _fail(f"internal error: {type(e).__name__}: {detail} (a bug in dcond: please report it; DCOND_DEBUG=1 "
                  "shows the traceback)", 1)


def _is_usage_error(e: Exception) -> bool:
    """Click's usage errors (a bad flag or value); Typer vendors its own click, so match them by shape."""
    return hasattr(e, "format_message") and isinstance(getattr(e, "exit_code", None), int)
