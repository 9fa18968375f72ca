"""The `reasonseg` command: segment, export, prepare-models, signal handling."""
