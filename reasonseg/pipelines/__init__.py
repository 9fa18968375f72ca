"""Pipelines: instruction + frame -> masks, behind one interface (`base.Pipeline`, DESIGN §4); `registry` builds one by name."""
