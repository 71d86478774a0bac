"""``eoshard select``: choose the best products for an area and period, and show why."""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from rich.table import Table

from eoshard.catalog.credentials import unsigned_item_dict
from eoshard.flows.app import app, console, errors, say, user_errors
from eoshard.flows.config import ConfigError, load_config
from eoshard.flows.figure_files import figure_path

if TYPE_CHECKING:
    import pandas as pd

    from eoshard.catalog import Selection
    from eoshard.catalog.product_search import SourceKind


def parse_aoi(text: str) -> Path | tuple[float, float, float, float]:
    """A vector file path, or ``minx,miny,maxx,maxy`` in degrees."""
    parts = text.split(",")
    if len(parts) == 4:
        try:
            minx, miny, maxx, maxy = (float(p) for p in parts)
        except ValueError:
            pass
        else:
            return (minx, miny, maxx, maxy)
    path = Path(text)
    if not path.exists():
        raise ConfigError(f"--aoi {text!r} is neither minx,miny,maxx,maxy (degrees) nor an existing vector file")
    return path


def parse_period(start: str, end: str) -> tuple[date, date]:
    """``--start`` and ``--end`` as days, in order; a ``ConfigError`` that names the option otherwise."""
    days = []
    for text, option in ((start, "--start"), (end, "--end")):
        try:
            days.append(date.fromisoformat(text))
        except ValueError as err:
            raise ConfigError(f"{option} must be a date like 2024-04-01, got {text!r}") from err
    if days[1] < days[0]:
        raise ConfigError(f"--end {days[1]} is before --start {days[0]}: swap them")
    return days[0], days[1]


@app.command("select")
def select_command(
    config: Annotated[Path | None, typer.Argument(help="YAML build config (its catalog, aoi and period)")] = None,
    source: Annotated[
        str | None,
        typer.Option(help="STAC API root URL, DHuS URL (--kind dhus), or a static catalog / ItemCollection file"),
    ] = None,
    kind: Annotated[str, typer.Option(help="auto, stac-api, static or dhus")] = "auto",
    collection: Annotated[str | None, typer.Option(help="only items of this collection")] = None,
    aoi: Annotated[str | None, typer.Option(help="vector file, or minx,miny,maxx,maxy (use --aoi=-1,...)")] = None,
    start: Annotated[str | None, typer.Option(help="first day, YYYY-MM-DD")] = None,
    end: Annotated[str | None, typer.Option(help="last day, YYYY-MM-DD")] = None,
    max_cloud: Annotated[
        float | None, typer.Option(min=0, max=100, help="highest cloud cover kept, percent")
    ] = None,
    dates: Annotated[
        int | None, typer.Option(min=1, help="choose up to this many dates spread over the period")
    ] = None,
    min_aoi_coverage: Annotated[
        float | None,
        typer.Option(
            min=0, max=1, help="leave out dates covering less of the AOI, 0..1 (config: catalog.min_aoi_coverage)"
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(help="leave out the product of this id (repeat it; config: catalog.exclude)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the selected products as JSON")] = False,
    out: Annotated[Path | None, typer.Option(help="save the selection as an ItemCollection JSON")] = None,
    plot: Annotated[
        Path | None, typer.Option(help="draw the cloud-cover timeline and the AOI map into a PNG")
    ] = None,
) -> None:
    """Select products: newest baselines, under the cloud limit, covering the AOI, dates spread in time."""
    import geopandas as gpd  # here, not with every command: the CLI starts in a fraction of the time

    from eoshard.catalog import read_static_items, search, select
    from eoshard.catalog.product_search import source_kind as resolve_kind
    from eoshard.catalog.stac_api import ApiOptions
    from eoshard.flows.aoi import read_aoi
    from eoshard.flows.products import api_options, unknown_exclusions

    with user_errors():
        if plot is not None:
            plot = figure_path(plot, "--plot")
        if config is not None and any((source, aoi, start, end)):
            given = [n for n, v in (("--source", source), ("--aoi", aoi), ("--start", start), ("--end", end)) if v]
            raise ConfigError(
                f"give a CONFIG or {', '.join(given)}, not both: CONFIG names its catalog, AOI and period "
                "(--max-cloud, --dates, --min-aoi-coverage, --exclude and --collection may narrow it)"
            )
        if config is not None:
            cfg = load_config(config)
            source_path: str = str(cfg.catalog.source)
            source_kind = cfg.catalog.kind
            if cfg.catalog.selection is not None:  # what the build uses: the saved products, not a search
                source_path, source_kind = str(cfg.catalog.selection), "static"
                say(f"{config} names a saved selection (catalog.selection: {cfg.catalog.selection}): the build "
                    "uses its products as they are; shown here under the config's rules", errors)  # fmt: skip
            options = api_options(cfg.catalog)
            collection = collection or cfg.catalog.collection
            area, area_crs = read_aoi(cfg.aoi)
            first, last = cfg.period.start, cfg.period.end
            max_cloud = cfg.catalog.max_cloud if max_cloud is None else max_cloud
            min_aoi_coverage = cfg.catalog.min_aoi_coverage if min_aoi_coverage is None else min_aoi_coverage
            exclude = [*cfg.catalog.exclude, *(exclude or [])]
        else:
            if not (source and aoi and start and end):
                raise ConfigError("give a CONFIG, or --source, --aoi, --start and --end")
            source_path = source
            if kind not in ("auto", "stac-api", "static", "dhus"):
                raise ConfigError(f"--kind must be auto, stac-api, static or dhus, not {kind!r}")
            source_kind = cast("SourceKind", kind)
            options = ApiOptions()
            area, area_crs = read_aoi(parse_aoi(aoi))
            first, last = parse_period(start, end)
        area_4326 = gpd.GeoSeries([area], crs=area_crs).to_crs(4326).iloc[0]
        if resolve_kind(source_path, source_kind) == "static":
            items = list(read_static_items(source_path, collection))  # every item, so every drop has a reason
        else:  # the server filters area, period and collection; cloudy items still come, to be shown as dropped
            items = list(search(source_path, area=area_4326, start=first, end=last, collection=collection,
                                kind=source_kind, options=options))  # fmt: skip
        unknown_exclusions(exclude or [], [i.id for i in items])
        selection = select(items, area_4326, first, last, max_cloud=max_cloud, dates=dates,
                           min_aoi_coverage=min_aoi_coverage or 0.0, exclude=exclude or ())  # fmt: skip
        if out is not None:
            # signed asset URLs (Planetary Computer) lose their signature: the build signs them again
            saved = selection.items.to_dict()
            saved["features"] = [unsigned_item_dict(f) for f in saved["features"]]
            out.write_text(json.dumps(saved, indent=1))
        if plot is not None:
            from eoshard.flows.selection_plot import plot_selection

            plot_selection(selection, area_4326, plot, (first, last))
        if as_json:
            chosen = selection.table[selection.table.selected]
            keep = ["id", "datetime", "cloud_cover", "aoi_overlap", "valid_fraction", "tile", "aoi_uncovered"]
            rows: list[dict[str, Any]] = [
                {**{k: r[k] for k in keep}, "datetime": r["datetime"].isoformat()} for r in _records(chosen)
            ]
            typer.echo(json.dumps(rows, indent=1))
        else:
            _print_table(selection)
        said = errors if as_json else console  # with --json, stdout holds the JSON alone
        if out is not None:
            say(f"selection saved to {out}", said)
        if plot is not None:
            say(f"selection plot: {plot}", said)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The table's rows; a missing value (NaN, as pandas holds it) is None, JSON's null."""
    return [{str(k): None if _missing(v) else v for k, v in row.items()} for row in frame.to_dict("records")]


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _share(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def _print_table(selection: Selection) -> None:
    table = Table(title=f"{int(selection.table.selected.sum())} of {len(selection.table)} products selected")
    for column in ("date", "tile", "cloud %", "AOI overlap", "AOI uncovered", "selected / reason"):
        table.add_column(column)
    for r in _records(selection.table):
        cloud = "" if r["cloud_cover"] is None else f"{r['cloud_cover']:.1f}"
        status = "[green]selected[/]" if r["selected"] else str(r["reason"])
        table.add_row(f"{r['datetime']:%Y-%m-%d}", r["tile"] or "", cloud, _share(r["aoi_overlap"]),
                      _share(r["aoi_uncovered"]), status)  # fmt: skip
    console.print(table)
