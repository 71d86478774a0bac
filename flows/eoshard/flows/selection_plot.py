"""The selection as pictures: cloud cover over time with the chosen dates, and the AOI with chosen footprints."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import geopandas as gpd
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import pandas as pd
import shapely
from matplotlib.colors import to_rgb
from shapely.geometry import shape

from eoshard.catalog import Selection


def plot_selection(
    selection: Selection, area: shapely.Geometry, path: Path, period: tuple[date, date] | None = None
) -> None:
    """Write a two-panel figure: timeline (left) and map (right); the timeline spans ``period`` (and a day on each
    side) when given, not every product the source listed."""
    table = selection.table
    if period is not None:
        first, last = (pd.Timestamp(d, tz="UTC") for d in period)
        table = table[
            (table.datetime >= first - pd.Timedelta(days=1)) & (table.datetime < last + pd.Timedelta(days=2))
        ]
    fig, (timeline, layout) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    left = table[~table.selected]
    chosen = table[table.selected]
    timeline.scatter(left.datetime, left.cloud_cover.fillna(0), c="0.6", s=14, label="not selected")
    timeline.scatter(chosen.datetime, chosen.cloud_cover.fillna(0), c="tab:blue", s=30, label="selected")
    for when in sorted(set(chosen.datetime.dt.normalize())):
        timeline.axvline(when, color="tab:blue", alpha=0.25, lw=1)
    if period is not None:
        timeline.set_xlim(
            pd.Timestamp(period[0]) - pd.Timedelta(days=1), pd.Timestamp(period[1]) + pd.Timedelta(days=2)
        )
    timeline.xaxis.set_major_formatter(mdates.ConciseDateFormatter(timeline.xaxis.get_major_locator()))
    timeline.set_ylabel("cloud cover (%)")
    timeline.set_title("products over the period")
    timeline.legend(loc="upper right")
    footprints = gpd.GeoSeries([shape(i.geometry) for i in selection.items], crs=4326)
    # filled, faintly: overlapping products darken, and a footprint that follows the AOI's edge (an AOI drawn on
    # the tile) still shows, where its outline alone would lie under the AOI's
    footprints.plot(ax=layout, facecolor=(*to_rgb("tab:blue"), 0.18), edgecolor="tab:blue", linewidth=0.8)
    gpd.GeoSeries([area], crs=4326).boundary.plot(ax=layout, color="black", linewidth=2)
    if not selection.uncovered.is_empty:
        gpd.GeoSeries([selection.uncovered], crs=4326).plot(ax=layout, color="tab:red", alpha=0.5)
    x0, y0, x1, y1 = area.buffer(max(area.bounds[2] - area.bounds[0], 0.01) * 0.6).bounds
    layout.set_xlim(x0, x1)
    layout.set_ylim(y0, y1)
    layout.set_title("AOI (black), selected footprints (blue), uncovered (red)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
