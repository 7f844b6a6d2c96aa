"""The installed notifyq version (its own module, so that no module imports the package root)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("notifyq")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
