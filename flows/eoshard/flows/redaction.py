"""The config as eoshard stores it (``_build/plan.json``) and prints it: every URL in it redacted.

``catalog.source`` may carry a user name, password or token (``https://user:pw@host/?token=...``): the search needs
them, the stored plan must not hold them (it is published with the dataset). See ``eoshard.catalog.credentials``.
"""

from __future__ import annotations

from typing import Any

from eoshard.catalog.credentials import redact_url
from eoshard.flows.config import BuildConfig

# The parts of a config that are URLs: (section, field).
_URL_FIELDS = (("catalog", "source"), ("s1", "source"), ("output", "url"))


def public_config(config: BuildConfig, exclude: Any = None) -> dict[str, Any]:
    """``config.model_dump(mode="json", exclude=exclude)`` with its URLs redacted."""
    data: dict[str, Any] = config.model_dump(mode="json", exclude=exclude)
    if data.get("s1", 0) is None:
        del data["s1"]  # a Sentinel-2-only config stores what it stored before the s1 section existed
    for section in ("s1", "hr"):  # nor does one without s1.modifier or hr.modifier
        if isinstance(data.get(section), dict) and data[section].get("modifier") is None:
            data[section].pop("modifier", None)
    if isinstance(data.get("catalog"), dict) and data["catalog"].get("exclude") == []:
        del data["catalog"]["exclude"]  # nor does one that leaves no product out
    timeseries = data.get("timeseries")
    if isinstance(timeseries, dict) and timeseries.get("mask") != "qa_pixel":
        timeseries.pop("qa_pixel_invalid", None)  # nor does a config without the Landsat mask
    for section, field in _URL_FIELDS:
        values = data.get(section)
        if isinstance(values, dict) and isinstance(values.get(field), str):
            values[field] = redact_url(values[field])
    return data
