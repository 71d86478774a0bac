"""Dataset cards: a GeoCroissant JSON-LD file (``croissant.json``) and the STAC label extension of the Collection.

``croissant.json`` is a Croissant 1.0 description (loadable with ``mlcroissant``) with the GeoCroissant 1.0
properties (``geocr:``): CRS, spatial resolution, bands with wavelengths. Its record set ``samples`` reads
``index.parquet``; its distribution names every file of the dataset with the SHA-256 of the single files. It is
written before ``dataset.json`` (which stays the last file of a build), so it carries the SHA-256 of the bytes that
``dataset.json`` will hold: ``json.dumps(manifest, indent=2)`` (tests compare the two).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pystac

from eoshard.pipeline.shards.commits import atomic_write
from eoshard.pipeline.shards.layout import (
    CARD_FILE,
    COLLECTION_FILE,
    INDEX_FILE,
    LMDB_DIR,
    MANIFEST_FILE,
    ZARR_DIR,
)

LABEL_EXTENSION = "https://stac-extensions.github.io/label/v1.0.1/schema.json"
CROISSANT_CONFORMS_TO = ["http://mlcommons.org/croissant/1.0", "http://mlcommons.org/croissant/geo/1.0"]
CROISSANT_CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "sc": "https://schema.org/",
    "cr": "http://mlcommons.org/croissant/",
    "geocr": "http://mlcommons.org/croissant/geo/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "dct": "http://purl.org/dc/terms/",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileObject": "cr:fileObject",
    "fileProperty": "cr:fileProperty",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}
# index.parquet columns in the record set ``samples``: (column, Croissant data type, description)
SAMPLE_FIELDS = (
    ("key", "sc:Text", "sample key: the LMDB key, '<epsg>_<resolution>_<x0>_<y0>'"),
    ("zarr_index", "sc:Integer", "the sample's slot in data.zarr"),
    ("split", "sc:Text", "train, val or test (spatially blocked)"),
    ("n_dates", "sc:Integer", "number of kept dates"),
    ("valid_fraction", "sc:Float", "mean valid fraction over the kept dates"),
    ("labelled_fraction", "sc:Float", "share of labelled pixels"),
    ("center_lon", "sc:Float", "longitude of the patch centre (WGS84 degrees)"),
    ("center_lat", "sc:Float", "latitude of the patch centre (WGS84 degrees)"),
    ("class_histogram", "sc:Text", "JSON object class code -> pixel count"),
)


def manifest_sha256(manifest: Mapping[str, Any]) -> str:
    """SHA-256 of ``dataset.json`` as ``finalize`` writes it."""
    return hashlib.sha256(json.dumps(manifest, indent=2).encode()).hexdigest()


def _file(file_id: str, path: str, media: str, sha256: str, description: str) -> dict[str, Any]:
    return {"@type": "cr:FileObject", "@id": file_id, "name": file_id, "description": description,
            "contentUrl": path, "encodingFormat": media, "sha256": sha256}  # fmt: skip


def _file_set(file_id: str, includes: str, media: str, description: str) -> dict[str, Any]:
    return {"@type": "cr:FileSet", "@id": file_id, "name": file_id, "description": description,
            "includes": includes, "encodingFormat": media}  # fmt: skip


def _quantity(value: float | None, unit: str) -> dict[str, Any] | None:
    return None if value is None else {"@type": "QuantitativeValue", "value": value, "unitText": unit}


def _spectral_bands(bands: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for name, info in bands.items():
        entry = {
            "@type": "geocr:SpectralBand",
            "name": name,
            "geocr:centerWavelength": _quantity(info.get("wavelength_nm"), "nm"),
            "geocr:bandwidth": _quantity(info.get("bandwidth_nm"), "nm"),
            "geocr:spatialResolution": _quantity(info.get("gsd_m"), "m"),
            "description": f"units {info['units']}, scale {info['scale']}, offset applied: {info['offset_applied']}",
        }
        out.append({k: v for k, v in entry.items() if v is not None})
    return out


def _optical_sensor(bands: Mapping[str, Mapping[str, Any]]) -> str:
    """``Landsat`` when the bands are Landsat's (``band_metadata``), else ``Sentinel-2``."""
    return "Landsat" if any(info.get("sensor") == "landsat" for info in bands.values()) else "Sentinel-2"


def croissant(
    manifest: Mapping[str, Any], bbox_4326: Sequence[float], sha256: Mapping[str, str]
) -> dict[str, Any]:
    """The GeoCroissant JSON-LD of a dataset; ``sha256`` of ``dataset.json``, ``collection.json`` and
    ``index.parquet``."""
    west, south, east, north = bbox_4326
    dates = manifest["dates"]
    bands = manifest.get("band_metadata") or {b: {} for b in manifest["bands"]}
    formats = manifest["formats"]
    files = [
        _file("manifest", MANIFEST_FILE, "application/json", sha256[MANIFEST_FILE], "eoshard manifest"),
        _file("collection", COLLECTION_FILE, "application/json", sha256[COLLECTION_FILE], "STAC Collection"),
        _file("index", INDEX_FILE, "application/x-parquet", sha256[INDEX_FILE], "one row per sample"),
    ]
    if formats.get("zarr"):
        files.append(_file_set("zarr", f"{ZARR_DIR}/**", "application/vnd+zarr", "Zarr v3, padded time axis"))
    if formats.get("lmdb"):
        files.append(_file_set("lmdb", f"{LMDB_DIR}/*/data.mdb", "application/x-lmdb", "LMDB, safetensors values"))
    fields = [
        {"@type": "cr:Field", "@id": f"samples/{column}", "name": column, "description": text, "dataType": kind,
         "source": {"fileObject": {"@id": "index"}, "extract": {"column": column}}}
        for column, kind, text in SAMPLE_FIELDS
    ]  # fmt: skip
    return {
        "@context": CROISSANT_CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": CROISSANT_CONFORMS_TO,
        "name": manifest["name"],
        "description": (
            f"eoshard dataset {manifest['name']} (format {manifest['format_version']}, see docs/format.md): "
            f"{manifest['n_samples']} samples of {manifest['patch']['size']} px, bands "
            f"{', '.join(manifest['bands'])}, {len(dates)} dates"
        ),
        "keywords": ["Earth observation", _optical_sensor(bands), "time series", "segmentation"],
        "spatialCoverage": {
            "@type": "Place",
            "geo": {"@type": "GeoShape", "box": f"{south} {west} {north} {east}"},
        },
        "temporalCoverage": f"{dates[0]}Z/{dates[-1]}Z",
        "geocr:coordinateReferenceSystem": manifest["crs"],
        "geocr:spatialResolution": _quantity(manifest["resolution"], "m"),
        "geocr:bandConfiguration": {
            "@type": "geocr:BandConfiguration",
            "geocr:totalBands": len(bands),
            "geocr:bandNameList": list(bands),
        },
        "geocr:spectralBandMetadata": _spectral_bands(bands),
        "distribution": files,
        "recordSet": [
            {
                "@type": "cr:RecordSet",
                "@id": "samples",
                "name": "samples",
                "key": {"@id": "samples/key"},
                "description": "the samples (index.parquet); pixels are in data.zarr and data.lmdb by key",
                "field": fields,
            }
        ],
    }


def write_cards(out: Path, manifest: Mapping[str, Any], bbox_4326: Sequence[float]) -> None:
    """Write ``croissant.json`` (after ``index.parquet`` and ``collection.json``, before ``dataset.json``)."""
    digests = {
        name: hashlib.sha256((out / name).read_bytes()).hexdigest() for name in (COLLECTION_FILE, INDEX_FILE)
    }
    digests[MANIFEST_FILE] = manifest_sha256(manifest)
    card = croissant(manifest, bbox_4326, digests)
    atomic_write(out / CARD_FILE, json.dumps(card, indent=2, sort_keys=True).encode())


def eo_bands(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The Collection's ``eo:bands`` summary: each band's name, and for optical bands in the table its common name,
    centre wavelength and full width at half maximum (micrometres, as the STAC eo extension has them)."""
    described = manifest.get("band_metadata") or {}
    out = []
    for band in manifest["bands"]:
        info = described.get(band) or {}
        entry: dict[str, Any] = {"name": band}
        if info.get("sensor") in ("sentinel-2", "landsat") and info.get("wavelength_nm") is not None:
            entry["common_name"] = info["common_name"]
            entry["center_wavelength"] = round(info["wavelength_nm"] / 1000, 4)
            entry["full_width_half_max"] = round(info["bandwidth_nm"] / 1000, 4)
        out.append(entry)
    return out


def add_label_extension(collection: pystac.Collection, manifest: Mapping[str, Any]) -> None:
    """The STAC label extension's summaries on the Collection: raster labels, their classes and tasks.

    Written as plain fields: pystac's label extension module is deprecated (it warns when imported).
    """
    labels = manifest.get("labels")
    if not labels:
        return
    codes = sorted({int(c) for c in (*labels.get("classes", {}), *labels.get("class_counts", {}))} - {0})
    collection.stac_extensions.append(LABEL_EXTENSION)
    collection.summaries.add("label:type", ["raster"])
    collection.summaries.add("label:tasks", ["segmentation", "classification"])
    collection.summaries.add("label:classes", [{"name": None, "classes": codes}])
