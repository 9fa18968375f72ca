"""Packages only (the metadata is in pyproject.toml): `reasonseg` and the export tree, whose code lives in the
top-level `export/` folder and installs as `reasonseg_export` (no plain `export` module in site-packages)."""
from setuptools import find_packages, setup

setup(packages=find_packages(include=["reasonseg", "reasonseg.*"]) + ["reasonseg_export"]
      + [f"reasonseg_export.{p}" for p in find_packages("export")],
      package_dir={"reasonseg_export": "export"},
      package_data={"reasonseg.grounding": ["presence_floors.json"]})  # fitted by bench/eval_unseen.py
