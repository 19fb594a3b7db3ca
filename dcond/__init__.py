"""dcond: dataset condensation as a chain of command-line stages over standard artifact folders."""

__version__ = "0.2.0"
