"""The `agon` command line."""
