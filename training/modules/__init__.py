"""LightningModules, one per method; each imports its model from `reasonseg.models`."""
