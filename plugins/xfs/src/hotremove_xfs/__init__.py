"""hotremove plugin package: XFS (see plugin.py and README.md)."""
