"""open_dataset's class layer names its codes as CF flags, so xarray users read names beside codes."""

from __future__ import annotations

from eoshard.pipeline.shards.layout import LabelLayout
from eoshard.pipeline.shards.xarray_view import class_flags


def test_every_named_or_counted_code_is_a_flag_in_order() -> None:
    labels = LabelLayout(
        {"class": ("int32", 10.0)}, {"12": "winter wheat", "3": "maize"}, {"0": 40, "3": 7, "99": 1}, background=0
    )
    flags = class_flags(labels)
    assert flags["flag_values"].tolist() == [0, 3, 12, 99]  # type: ignore[attr-defined]
    assert flags["flag_meanings"] == "background maize winter_wheat class_99"


def test_a_named_background_keeps_its_name() -> None:
    flags = class_flags(
        LabelLayout({"class": ("int32", 10.0)}, {"255": "nodata"}, {"255": 5, "1": 2}, background=255)
    )
    assert flags["flag_values"].tolist() == [1, 255]  # type: ignore[attr-defined]
    assert flags["flag_meanings"] == "class_1 nodata"
