"""Promptable segmenters: the kind x backend registry and one folder per kind."""
