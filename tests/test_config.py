import pytest

from reasonseg.bringup import bringup_share
from reasonseg.config import Settings, load_settings
from reasonseg.errors import ConfigError


def test_driving_yaml_is_valid_and_complete():
    path = bringup_share() / "config" / "driving.yaml"
    s = load_settings(path)
    assert set(s.flat()) == set(Settings().flat())  # every parameter is written down in the shipped YAML


def test_flat_roundtrip_and_validation(tmp_path):
    s = Settings()
    assert Settings.from_flat(s.flat()) == s
    cases = [({"segmenter.num_points": -1}, "below minimum"), ({"segmenter.backend": "cuda9"}, "not one of"),
             ({"detector.score_floor": "high"}, "must be float"), ({"nonsense": 1}, "unknown parameter"),
             ({"runtime.publish_overlay": 1}, "must be bool")]
    for values, match in cases:
        with pytest.raises(ConfigError, match=match):
            Settings.from_flat(values)
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
