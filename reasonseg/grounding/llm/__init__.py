"""OpenAI-compatible LLM refinement (paper: training-free LLM refinement, §3.3)."""
