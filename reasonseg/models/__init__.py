"""The one definition of every model: torch modules, configs, weight conversion and checks (no runners)."""
