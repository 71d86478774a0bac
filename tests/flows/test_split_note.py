"""The build's warning when a split that should hold samples holds none."""

from __future__ import annotations

from eoshard.flows.commands.build import empty_split_note


def _manifest(fractions: list[float], counts: dict[str, int]) -> dict[str, object]:
    return {"splits": {"block_size": 1280.0, "fractions": fractions, "seed": 0, "counts": counts}}


def test_empty_splits_are_named_with_what_to_change() -> None:
    note = empty_split_note(_manifest([0.7, 0.15, 0.15], {"train": 15, "val": 0, "test": 0}))
    assert note is not None and note.startswith(
        "the val and test splits hold no sample: patches of one 1280 m block"
    )
    assert "lower splits.block_size or widen the AOI" in note
    one = empty_split_note(_manifest([0.7, 0.15, 0.15], {"train": 15, "val": 2, "test": 0}))
    assert one is not None and one.startswith("the test split holds no sample")


def test_no_warning_for_splits_asked_empty_or_a_dataset_without_samples() -> None:
    assert empty_split_note(_manifest([1.0, 0.0, 0.0], {"train": 15, "val": 0, "test": 0})) is None
    assert empty_split_note(_manifest([0.8, 0.1, 0.1], {"train": 0, "val": 0, "test": 0})) is None
    assert empty_split_note(_manifest([0.8, 0.1, 0.1], {"train": 30, "val": 3, "test": 2})) is None
