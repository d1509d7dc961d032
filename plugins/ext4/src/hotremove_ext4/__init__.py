"""hotremove plugin package."""
