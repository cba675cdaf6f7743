"""Errors a user can fix: the CLI prints them as one line and exits 2."""


class InputError(Exception):
    """A bad file, range or setting; the message names the file and the problem."""


class DiskFull(InputError):
    """No space left while writing; everything finished before is kept, so the same command resumes."""


class OutOfMemory(InputError):
    """GPU or host memory ran out stylizing a frame of this size."""


class ChunkFailed(Exception):
    """Parts of a render (Ray chunks, stitches) failed after their retries: not the user's doing;
    the message names each part and its error. What they finished is kept."""
