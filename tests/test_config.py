from pathlib import Path

import pytest

from reasonseg.core.settings import Settings
from reasonseg.settings.validation import settings_from_flat
from reasonseg.settings.loading import load_settings
from reasonseg.settings.ros_args import unknown_parameter_warnings
from reasonseg.core.errors import ConfigError


def test_driving_yaml_is_valid_and_complete():
    path = Path(__file__).resolve().parents[1] / "ros_ws/src/reasonseg_bringup/config/driving.yaml"
    s = load_settings(path)
    assert set(s.flat()) == set(Settings().flat())  # every parameter is written down in the shipped YAML


def test_flat_roundtrip_and_validation(tmp_path):
    s = Settings()
    assert settings_from_flat(s.flat()) == s
    cases = [({"segmenter.num_points": -1}, "below minimum"), ({"segmenter.backend": "cuda9"}, "not one of"),
             ({"detector.score_floor": "high"}, "must be float"), ({"nonsense": 1}, "unknown parameter"),
             ({"runtime.publish_overlay": 1}, "must be bool")]
    for values, match in cases:
        with pytest.raises(ConfigError, match=match):
            settings_from_flat(values)
    bad = tmp_path / "bad.yaml"
    bad.write_text("reasonseg:\n  ros__parameters:\n    llm: {timeout_s: -3}\n")
    with pytest.raises(ConfigError, match="llm.timeout_s"):
        load_settings(bad)
    bad.write_text("{unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad)
    plain = tmp_path / "plain.yaml"
    plain.write_text("segmenter: {num_points: 5}\n")
    assert load_settings(plain).segmenter.num_points == 5


@pytest.mark.parametrize("name", ["detector.score_floor", "llm.timeout_s", "runtime.max_aspect_ratio"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_are_rejected(name, value):
    """NaN passes every range check (all comparisons are false): it must be refused by name."""
    with pytest.raises(ConfigError, match=f"{name}.*finite"):
        settings_from_flat({name: value})


def test_yaml_nan_is_rejected(tmp_path):
    cfg = tmp_path / "nan.yaml"
    cfg.write_text("/**:\n  ros__parameters:\n    llm: {timeout_s: .nan}\n")
    with pytest.raises(ConfigError, match="llm.timeout_s.*finite"):
        load_settings(cfg)


@pytest.mark.parametrize("key", ["/**", "reasonseg", "/perception/reasonseg", "/**/reasonseg"])
def test_ros_params_file_read_under_any_node_key(tmp_path, key):
    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"{key}:\n  ros__parameters:\n    segmenter: {{num_points: 7}}\n")
    assert load_settings(cfg).segmenter.num_points == 7


def test_unknown_parameter_warnings_name_the_closest_setting():
    declared = Settings().flat()
    given = ["segmenter.num_point", "use_sim_time", "qos_overrides./x.publisher.depth", "detector.score_floor",
             "totally_unrelated"]
    assert unknown_parameter_warnings(given, declared) == [
        "unknown parameter 'segmenter.num_point' ignored (did you mean 'segmenter.num_points'?)",
        "unknown parameter 'totally_unrelated' ignored"]


def test_node_command_line_checked_before_rcl(tmp_path):
    from reasonseg.settings.ros_args import check_ros_args

    good = tmp_path / "p.yaml"
    good.write_text("/**:\n  ros__parameters: {}\n")
    check_ros_args(["reasonseg_node", "--ros-args", "--params-file", str(good), "-p", "segmenter.num_points:=5",
                    "-p", "detector.score_floor:=0.2", "-p", "someone_elses.param:=x"])
    for argv, match in [(["--params-file", str(tmp_path / "nope.yaml")], "params file not found"),
                        (["-p", "segmenter.num_points:=many"], "must be int"),
                        (["-p", "detector.score_floor:=nan"], "finite"),
                        (["--param", "runtime.max_aspect_ratio:=0.5"], "below minimum")]:
        with pytest.raises(ConfigError, match=match):
            check_ros_args(["reasonseg_node", "--ros-args", *argv])
