"""Quicklooks colour each class code the same way in every panel, the background grey, with a legend."""

from __future__ import annotations

import numpy as np

from eoshard.flows.quicklooks import _BACKGROUND_COLOUR, ClassColours

LABELS = {"background": 0, "classes": {"3": "maize"}, "class_counts": {"0": 5, "3": 7, "101": 2}}


def test_codes_that_are_not_contiguous_get_their_own_colours() -> None:
    colours = ClassColours(LABELS)
    assert colours.codes.tolist() == [0, 3, 101]
    assert colours.indices(np.array([[101, 0], [3, 3]])).tolist() == [[2, 0], [1, 1]]
    assert colours.colours[0] == _BACKGROUND_COLOUR
    assert len(set(colours.colours)) == 3


def test_the_legend_names_each_code_and_the_background() -> None:
    labels = [patch.get_label() for patch in ClassColours(LABELS).legend()]
    assert labels == ["0 background", "3 maize", "101"]


def test_a_named_class_without_pixels_keeps_its_place_in_the_legend() -> None:
    labels = {**LABELS, "classes": {"3": "maize", "7": "rice"}}
    assert [patch.get_label() for patch in ClassColours(labels).legend()] == [
        "0 background",
        "3 maize",
        "7 rice",
        "101",
    ]
