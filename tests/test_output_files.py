"""`atomic_target` / `write_bytes`: a file appears whole under its name or not at all, and nothing is left beside it."""
from __future__ import annotations

from pathlib import Path

import pytest

from reasonseg.core.output_files import OutputError, atomic_target, write_bytes


def test_renamed_into_place_keeping_the_suffix(tmp_path: Path) -> None:
    final = tmp_path / "graph.onnx"
    final.write_bytes(b"old")
    with atomic_target(final) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".onnx" and tmp.name.startswith(".graph.onnx.tmp-")
        tmp.write_bytes(b"new")
        (tmp.parent / (tmp.name + ".data")).write_bytes(b"x")  # something a library left beside it
        assert final.read_bytes() == b"old"  # readers see the old file until the block ends
    assert final.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["graph.onnx"]


def test_failure_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    final = tmp_path / "model.xml"
    final.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_target(final, companions=(".bin",)) as tmp:
        tmp.write_bytes(b"half")
        tmp.with_suffix(".bin").write_bytes(b"half")
        raise RuntimeError("the library failed")
    assert final.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["model.xml"]


def test_companions_renamed_with_the_main_file(tmp_path: Path) -> None:
    final = tmp_path / "encoder.xml"
    with atomic_target(final, companions=(".bin",)) as tmp:
        tmp.write_bytes(b"xml")
        tmp.with_suffix(".bin").write_bytes(b"bin")
    assert final.read_bytes() == b"xml" and final.with_suffix(".bin").read_bytes() == b"bin"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["encoder.bin", "encoder.xml"]


def test_write_bytes_failure_is_an_output_error(tmp_path: Path) -> None:
    write_bytes(tmp_path / "a.json", b"{}")
    assert (tmp_path / "a.json").read_bytes() == b"{}"
    with pytest.raises(OutputError, match="could not write"):
        write_bytes(tmp_path / "missing" / "a.json", b"{}")  # the folder is not created
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
