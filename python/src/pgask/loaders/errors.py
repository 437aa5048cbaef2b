"""The one error loaders raise."""


class LoaderError(Exception):
    """A file that cannot be loaded; str(e) is the reason, naming the file."""
