"""The one exception type that minivgg raises for problems a user can fix.

Its message is a single line that says what is wrong and, where possible, what to do about it.
The command-line scripts print it as ``error: <message>`` and exit with status 1, without a
traceback (``run_command``). Anything else that escapes is a bug in minivgg.
"""
import sys


class MinivggError(Exception):
    """A user-facing error: bad input, unusable weights, no network, an unwritable folder."""


def error_line(e):
    """The one line a command prints for a MinivggError, or for an OSError while it writes its output
    (a full disk, a folder that went away): ``error: <why>[: <file>]``."""
    if isinstance(e, MinivggError):
        return f"error: {e}"
    why = e.strerror or str(e) or type(e).__name__
    return f"error: {why}: {e.filename}" if e.filename else f"error: {why}"


def run_command(run, args, interrupted="interrupted"):
    """Run a command's body ``run(args)`` as every minivgg command does: returns (its result, None), or
    (None, exit status) after printing one line to stderr: 1 for a MinivggError or an OSError while
    writing (``error_line``), 130 for Ctrl-C (``interrupted``: what the command says it kept)."""
    try:
        return run(args), None
    except (MinivggError, OSError) as e:
        print(error_line(e), file=sys.stderr)
        return None, 1
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return None, 130
