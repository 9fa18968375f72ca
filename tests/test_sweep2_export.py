"""`reasonseg export`: an option a format does not take is refused first, in one line naming the option and what
the format takes (issue 29, item 13) - it was ignored (fp32 written for `--precision fp16`) or the run failed later
on another argument."""
from __future__ import annotations

import pytest

from reasonseg.cli.main import main as cli
from reasonseg_export.formats import FORMATS
from reasonseg_export.formats import OPTIONS as FORMAT_OPTIONS

FP32_ONLY = ["sam2", "centernet", "person-selfie", "l2l", "lens-connector", "cora-projection"]


def _error(capsys) -> str:
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("reasonseg: error: export "), line
    return line


@pytest.mark.parametrize("fmt", FP32_ONLY)
@pytest.mark.parametrize("precision", ["fp16", "int8", "bf16"])
def test_a_precision_the_format_does_not_write_is_refused_before_anything_else(fmt, precision, tmp_path,
                                                                               capsys) -> None:
    # no --checkpoint: the option is judged first, not "--checkpoint is required"
    assert cli(["export", fmt, "--precision", precision, "--out", str(tmp_path / "out")]) == 2
    err = _error(capsys)
    assert f"--precision {precision}" in err and f"{fmt} writes fp32 only" in err, err
    assert not (tmp_path / "out").exists()


OPTIONS = (["--int8-method", "static"], ["--photos", "{tmp}"], ["--config", "{tmp}/s.yaml"], ["--target", "thor"])
# every (format, option) pair where the format does not take the option (its `takes` says which it does)
NOT_TAKEN = [(fmt, option) for fmt in (*FP32_ONLY, "tensorrt") for option in OPTIONS
             if option[0].removeprefix("--").replace("-", "_") not in FORMATS[fmt].takes]


@pytest.mark.parametrize("fmt, option", NOT_TAKEN)
def test_an_option_the_format_does_not_take_is_named_with_what_it_takes(fmt, option, tmp_path, capsys) -> None:
    assert cli(["export", fmt, *(o.format(tmp=tmp_path) for o in option), "--out", str(tmp_path / "out")]) == 2
    err = _error(capsys)
    assert f"{option[0]} is not an option of {fmt}" in err and "it takes --checkpoint" in err, err


def test_lite_sam_options_that_depend_on_a_precision_are_refused_without_it(tmp_path, capsys) -> None:
    assert cli(["export", "lite-sam", "--int8-method", "openvino", "--out", str(tmp_path / "out")]) == 2
    assert "--int8-method applies only with --precision int8" in _error(capsys)
    assert cli(["export", "lite-sam", "--photos", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "--photos applies only with --precision fp16, int8 or bf16" in _error(capsys)
    assert cli(["export", "lite-sam", "--config", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "out")]) == 2
    assert "--config is not an option of lite-sam" in _error(capsys)


def test_tensorrt_precision_needs_a_checkpoint_and_config_excludes_one(tmp_path, capsys) -> None:
    assert cli(["export", "tensorrt", "--precision", "fp16", "--out", str(tmp_path / "out")]) == 2
    assert "--precision applies only with --checkpoint" in _error(capsys)
    assert cli(["export", "tensorrt", "--config", str(tmp_path / "s.yaml"), "--checkpoint", str(tmp_path / "x.onnx"),
                "--out", str(tmp_path / "out")]) == 2
    assert "--config and --checkpoint" in _error(capsys)


def test_every_format_declares_what_it_takes() -> None:
    for fmt in FORMATS.values():
        assert {"checkpoint", "out"} <= set(fmt.takes), fmt.name
        assert set(fmt.takes) <= set(FORMAT_OPTIONS), fmt.name
