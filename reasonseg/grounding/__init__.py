"""Language to targets: query parsing, affordances, selection, label resolver, detector, LLM / VLM grounders."""
