"""config/detector.yaml, DetectorConfig and the ROS parameter specs are one set of keys."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from lookout.paths import config_dir
from lookout.perception.config import DetectorConfig, load_detector_config, parameter_specs


def test_shipped_yaml_loads_and_names_every_field_but_the_optional_vocabulary():
    cfg = load_detector_config(config_dir() / "detector.yaml")
    raw = yaml.safe_load((config_dir() / "detector.yaml").read_text())["/**"]["ros__parameters"]
    # `classes` and `contrast_phrases` stay commented out: ROS parameter files cannot hold an empty list.
    assert set(raw) == set(DetectorConfig.model_fields) - {"classes", "contrast_phrases"}
    assert cfg.image_qos == "sensor_data" and cfg.classes == []


def test_plain_yaml_and_overrides_work(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text("model: m.pt\nconf: 0.5\nclasses: [person, red cup]\n")
    cfg = load_detector_config(path, iou=0.3)
    assert (cfg.model, cfg.conf, cfg.iou, cfg.classes) == ("m.pt", 0.5, 0.3, ["person", "red cup"])


@pytest.mark.parametrize(
    "bad", [{"conf": 1.5}, {"imgsz": 100}, {"image_qos": "fast"}, {"model": "  "}, {"unknown_key": 1}]
)
def test_invalid_values_are_refused(bad):
    with pytest.raises(ValidationError):
        DetectorConfig(**bad)


def test_parameter_specs_carry_types_ranges_and_choices():
    specs = {s.name: s for s in parameter_specs()}
    assert set(specs) == set(DetectorConfig.model_fields)
    assert (specs["conf"].kind, specs["conf"].minimum, specs["conf"].maximum) == ("float", 0.0, 1.0)
    assert (specs["imgsz"].kind, specs["imgsz"].minimum, specs["imgsz"].step) == ("int", 0, 32)  # 0: trained size
    assert specs["classes"].kind == "str_list" and specs["classes"].default == []
    assert specs["image_qos"].choices == ("sensor_data", "reliable")
    assert all(s.description for s in specs.values())
