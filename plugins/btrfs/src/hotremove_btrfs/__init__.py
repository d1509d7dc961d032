"""hotremove plugin package: btrfs (see README.md)."""
