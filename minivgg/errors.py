"""The one exception type that minivgg raises for problems a user can fix.

Its message is a single line that says what is wrong and, where possible, what to do about it.
The command-line scripts print it as ``error: <message>`` and exit with status 1, without a
traceback. Anything else that escapes is a bug in minivgg.
"""


class MinivggError(Exception):
    """A user-facing error: bad input, unusable weights, no network, an unwritable folder."""
