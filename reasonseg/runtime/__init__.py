"""Runtime: frame gate, asynchronous grounding, per-frame segmentation (DESIGN §3)."""
