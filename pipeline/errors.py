"""Errors a user can fix: the CLI prints them as one line and exits 2."""


class InputError(Exception):
    """A bad file, range or setting; the message names the file and the problem."""
