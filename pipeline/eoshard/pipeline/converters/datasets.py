"""The layouts of the public datasets: which patches a folder holds, their keys and band names (as rico-hdl).

Each dataset is one or more source groups (e.g. BigEarthNet S1, S2, reference maps); a group turns a root folder into
sorted patch paths, and a patch path into its LMDB key and the (file, band index) of each named band.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from eoshard.pipeline.converters.errors import DatasetLayoutError
from eoshard.pipeline.converters.safety import check_key, listed_files, shown

S2_12 = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
# EuroSAT's 13 bands in file order; EuroSAT names the narrow NIR band B08A and stores it last
EUROSAT_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B08A")
SSL4EO_L1C = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
SSL4EO_L2A = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12")
BEN_S2_SHAPES = {"B02": 120, "B03": 120, "B04": 120, "B08": 120, "B05": 60, "B06": 60, "B07": 60, "B8A": 60,
                 "B11": 60, "B12": 60, "B01": 20, "B09": 20}  # fmt: skip

BandSource = tuple[Path, int]  # file, 1-based band index


@dataclass(frozen=True)
class SourceGroup:
    """One kind of patch of a dataset: how to find patches under a root, key them and locate their bands."""

    name: str
    patch_pattern: re.Pattern[str]  # matched against a patch path's name (folder or file)
    patches_are_dirs: bool
    key: Callable[[Path], str]
    bands: Callable[[Path], dict[str, BandSource]]
    allowed_files: re.Pattern[str]  # every file under the root must match this (or be skipped)
    skipped_files: re.Pattern[str] = re.compile(r"$^")
    depth: int | None = None  # patch depth below the root when the name alone does not identify patches
    shapes: Callable[[str], tuple[int, int] | None] = lambda band: None  # the shape a band must have, if fixed


def _stem(path: Path) -> str:
    return path.stem if not path.is_dir() else path.name


def _with_parent(path: Path) -> str:
    return f"{path.parent.name}_{path.name}"


def _three_levels(path: Path) -> str:
    return f"{path.parent.parent.name}_{path.parent.name}_{path.name}"


def _suffixed(
    bands: tuple[str, ...], template: str = "{stem}_{band}.tif"
) -> Callable[[Path], dict[str, BandSource]]:
    def locate(patch: Path) -> dict[str, BandSource]:
        return {b: (patch / template.format(stem=patch.name, band=b), 1) for b in bands}

    return locate


def _indexed(names: tuple[str, ...], file: str | None = None) -> Callable[[Path], dict[str, BandSource]]:
    def locate(patch: Path) -> dict[str, BandSource]:
        path = patch / file.format(stem=patch.name) if file else patch
        return {name: (path, i) for i, name in enumerate(names, start=1)}

    return locate


def _fixed(size: int) -> Callable[[str], tuple[int, int] | None]:
    return lambda band: (size, size)


_TIF = re.compile(r".*\.tif$")
BIGEARTHNET = {
    "s1": SourceGroup(
        "s1", re.compile(r"^S1[AB]_IW_GRDH_.*_\d+_\d+$"), True, _stem, _suffixed(("VV", "VH")),
        re.compile(r"^S1[AB]_IW_GRDH_.*_\d+_\d+_(VV|VH)\.tif$"), shapes=_fixed(120),
    ),
    "s2": SourceGroup(
        "s2", re.compile(r"^S2[AB]_MSIL2A_.*_\d+_\d+$"), True, _stem, _suffixed(S2_12),
        re.compile(r"^S2[AB]_MSIL2A_.*_\d+_\d+_(B0[1-9]|B1[12]|B8A)\.tif$"),
        shapes=lambda band: (BEN_S2_SHAPES[band],) * 2,
    ),
    "reference-maps": SourceGroup(
        "reference-maps", re.compile(r"^S2[AB]_MSIL2A_.*_\d+_\d+_reference_map\.tif$"), False, _stem,
        lambda p: {"Data": (p, 1)}, re.compile(r"^S2[AB]_MSIL2A_.*_\d+_\d+_reference_map\.tif$"), shapes=_fixed(120),
    ),
}  # fmt: skip
SSL4EO_S12 = {
    "s1": SourceGroup("s1", re.compile(r".+"), True, _three_levels, _suffixed(("VV", "VH"), "{band}.tif"),
                      re.compile(r"^(VV|VH)\.tif$"), re.compile(r"^metadata\.json$"), depth=2),
    "s2c": SourceGroup("s2c", re.compile(r".+"), True, _three_levels, _suffixed(SSL4EO_L1C, "{band}.tif"),
                       re.compile(r"^B(1[0-2]?|[2-9]|8A)\.tif$"), re.compile(r"^metadata\.json$"), depth=2),
    "s2a": SourceGroup("s2a", re.compile(r".+"), True, _three_levels, _suffixed(SSL4EO_L2A, "{band}.tif"),
                       re.compile(r"^B(1[12]?|[2-9]|8A)\.tif$"), re.compile(r"^metadata\.json$"), depth=2),
}  # fmt: skip
_TOM_SKIP = re.compile(r"^(thumbnail\.png|cloud_mask\.tif)$")
MAJOR_TOM = {
    "s1": SourceGroup("s1", re.compile(r"^S1[AB]_IW_GRDH_.*_rtc$"), True, _with_parent,
                      _suffixed(("vv", "vh"), "{band}.tif"), re.compile(r"^(vv|vh)\.tif$"), _TOM_SKIP),
    "s2": SourceGroup("s2", re.compile(r"^S2[ABC]_MSIL2A_.*_[0-9T]+$"), True, _with_parent,
                      _suffixed(S2_12, "{band}.tif"), re.compile(r"^(B0[1-9]|B1[12]|B8A)\.tif$"), _TOM_SKIP),
}  # fmt: skip
SINGLE = {
    "eurosat-ms": SourceGroup("eurosat-ms", re.compile(r"^\w+_\d+\.tif$"), False, _stem, _indexed(EUROSAT_BANDS),
                              re.compile(r"^\w+_\d+\.tif$"), shapes=_fixed(64)),
    "uc-merced": SourceGroup("uc-merced", re.compile(r"^[a-z]+\d\d\.tif$"), False, _stem,
                             _indexed(("Red", "Green", "Blue")), re.compile(r"^[a-z]+\d\d\.tif$")),
    "hyspecnet-11k": SourceGroup(
        "hyspecnet-11k", re.compile(r"^ENMAP.*?_L2A.*-Y\d+_X\d+$"), True, _stem,
        _indexed(tuple(f"B{i}" for i in range(1, 225)), "{stem}-SPECTRAL_IMAGE.TIF"),
        re.compile(r"^ENMAP.*-SPECTRAL_IMAGE\.TIF$"), re.compile(r"^ENMAP.*-(QL_.*\.TIF|THUMBNAIL\.jpg)$"),
        shapes=_fixed(128),
    ),
    "hydro": SourceGroup("hydro", re.compile(r"^patch_\d+\.tif$"), False, _stem, _indexed(S2_12),
                         re.compile(r"^patch_\d+\.tif$"), shapes=_fixed(256)),
}  # fmt: skip
DATASETS: dict[str, dict[str, SourceGroup]] = {
    "bigearthnet": BIGEARTHNET,
    "ssl4eo-s12": SSL4EO_S12,
    "major-tom-core": MAJOR_TOM,
    **{name: {name: group} for name, group in SINGLE.items()},
}


def discover(group: SourceGroup, root: Path) -> list[Path]:
    """The group's patches under ``root`` in sorted path order; every other file must be one it skips.

    Links that leave ``root`` or lead to folders, and names that make unusable keys, are refused (``safety``).
    """
    if not root.is_dir():
        raise DatasetLayoutError(f"{root} is not a folder: expected the {group.name} root of the dataset")
    files = listed_files(root)
    for path in files:
        if not (group.allowed_files.fullmatch(path.name) or group.skipped_files.fullmatch(path.name)):
            raise DatasetLayoutError(
                f"{shown(path)} does not fit the {group.name} layout (expected files like "
                f"{group.allowed_files.pattern!r}): check that the folder is the right dataset and part"
            )
    if group.depth is not None:
        patches = sorted(
            {p.relative_to(root).parts[: group.depth] for p in files if group.allowed_files.fullmatch(p.name)}
        )
        found = [root.joinpath(*parts) for parts in patches if len(parts) == group.depth]
    elif group.patches_are_dirs:
        found = sorted({p.parent for p in files if group.patch_pattern.fullmatch(p.parent.name)})
    else:
        found = [p for p in files if group.patch_pattern.fullmatch(p.name)]
    if not found:
        raise DatasetLayoutError(
            f"no {group.name} patches under {root} (expected names like {group.patch_pattern.pattern!r})"
        )
    for patch in found:
        check_key(group.key(patch), patch)
    return sorted(found, key=str)
