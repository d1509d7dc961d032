"""hotremove-minix: an example third-party hotremove plugin (see README.md)."""

__version__ = "0.1.0"
