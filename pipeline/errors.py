"""Errors a user can fix: the CLI prints them as one line and exits 2."""


class InputError(Exception):
    """A bad file, range or setting; the message names the file and the problem."""


class ChunkFailed(Exception):
    """Parts of a render (Ray chunks, stitches) failed after their retries: not the user's doing;
    the message names each part and its error, and running the same command again resumes."""
