"""The build config: typed and validated at the edge (pydantic v2), frozen inside, round-trips to YAML."""

from __future__ import annotations

import difflib
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from eoshard.flows.errors import FlowsError
from eoshard.pipeline.bands import canonical_band
from eoshard.pipeline.expressions import expression_bands, parse_expression
from eoshard.pipeline.landsat import QA_PIXEL_BITS, QA_PIXEL_INVALID, qa_bits
from eoshard.pipeline.sensors import S1, band_sensor


class ConfigError(FlowsError, ValueError):
    """A config file that cannot be used; the message lists every problem, one per line."""


def _resolve_existing(value: Path, info: ValidationInfo) -> Path:
    """Resolve a path relative to the config file's folder and require that it exists."""
    path = _resolve(value, info)
    if not path.exists():
        raise ValueError(f"file not found: {path} (relative paths are relative to the config file)")
    return path


def _resolve(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    return (value if value.is_absolute() or base is None else Path(base) / value).resolve()


ExistingPath = Annotated[Path, AfterValidator(_resolve_existing)]
RelativePath = Annotated[Path, AfterValidator(_resolve)]
Bbox = tuple[float, float, float, float]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _source(value: str, info: ValidationInfo) -> str:
    """A URL stays as it is; a path is resolved relative to the config file and must exist."""
    if value.startswith(("http://", "https://")):
        return value
    return str(_resolve_existing(Path(value), info))


class CatalogConfig(_Model):
    """Where products come from and which ones qualify."""

    source: Annotated[str, AfterValidator(_source)] = Field(
        description="STAC API root URL, DHuS mirror URL (with kind: dhus), or a static catalog.json, "
        "ItemCollection or FeatureCollection file"
    )
    kind: Literal["auto", "stac-api", "static", "dhus"] = Field(
        "auto", description="auto: an http(s) URL is a STAC API (a .json URL a static file), a path is static"
    )
    collection: str | None = None
    max_cloud: float = Field(100.0, ge=0, le=100, description="highest eo:cloud_cover kept, in percent")
    page_size: int = Field(100, ge=1, le=10000, description="items per page asked of an API")
    modifier: str | None = Field(
        None, description="package.module:function that signs items, e.g. planetary_computer:sign_inplace"
    )
    headers_from_env: dict[str, str] = Field(
        default_factory=dict,
        description="HTTP header -> name of the environment variable holding its value (tokens stay out of files)",
    )
    min_aoi_coverage: float = Field(
        0.0, ge=0, le=1, description="dates whose products cover less of the AOI (0..1) are left out"
    )
    selection: ExistingPath | None = Field(
        None,
        description="a selection saved by `eoshard select --out`: the build uses it as reviewed; without it "
        "the build applies the rules of `eoshard select` to what the search finds",
    )
    exclude: list[str] = Field(
        default_factory=list,
        description="ids of products to leave out (a damaged or withdrawn file): `select`, `build` and `refresh` "
        "skip them, from a search or a saved selection",
    )


class PeriodConfig(_Model):
    start: date
    end: date

    @model_validator(mode="after")
    def _ordered(self) -> PeriodConfig:
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self


class GridConfig(_Model):
    resolution: float = Field(10.0, gt=0, description="metres; must divide 60")
    crs: str | None = Field(None, description="target CRS; default: the UTM zone of the AOI's centroid")
    chunksize: int = Field(512, ge=64, le=8192, description="dask chunk size of the cube, in pixels")
    single_resolution: bool = Field(False, description="resample every band to `resolution` (one group)")


class CubeConfig(_Model):
    """How the cube is read: the engine, the resampling where products need reprojection, the values."""

    engine: Literal["stackstac", "odc-stac"] = Field("stackstac", description="odc-stac cross-checks stackstac")
    reads: Literal["direct", "graph"] = Field(
        "direct",
        description="how the build reads pixels: 'direct' (each shard task reads its source blocks itself; the "
        "stackstac engine's values, bit for bit, reflectance and indices made from them) or 'graph' (from the lazy "
        "cubes' Dask graph). Builds with the odc-stac engine read through the graph",
    )
    resampling: str = Field("nearest", description="rasterio Resampling name; nearest keeps source values")
    reflectance: bool = Field(
        False, description="float32 (DN + BOA offset) / 10000 with NaN for nodata; default: uint16 DN as stored"
    )
    indices: dict[str, str] = Field(
        default_factory=dict,
        description="name -> band math ('(B08 - B04) / (B08 + B04)') or a standard index (ndvi, ndwi, evi2, ndbi, nbr)",
    )

    @field_validator("resampling")
    @classmethod
    def _known_resampling(cls, value: str) -> str:
        from rasterio.enums import Resampling  # rasterio loads when a config is read, not with every command

        if value not in Resampling.__members__:
            raise ValueError(f"unknown resampling; expected one of {', '.join(Resampling.__members__)}")
        return value

    @field_validator("indices")
    @classmethod
    def _band_math(cls, value: dict[str, str]) -> dict[str, str]:
        for name, expression in value.items():
            if not name.isidentifier():
                raise ValueError(f"index name {name!r} must be a plain name such as ndvi")
            parse_expression(expression)  # ExpressionError is a ValueError: pydantic reports it
        return value


def _class_name(value: object) -> object:
    """A YAML key that reads as a whole number (``10: 4``) names the text class "10", as the file's column has it."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


ClassName = Annotated[str, BeforeValidator(_class_name)]


class LabelsConfig(_Model):
    path: ExistingPath
    layer: str | None = None
    class_column: str
    class_name_column: str | None = None
    class_codes: dict[ClassName, int] | None = Field(
        None,
        description="text class names -> integer codes (1 or more); without it a text class_column gets the "
        "codes 1, 2, ... in sorted order of its names, recorded in dataset.json",
    )
    id_column: str | None = Field(None, description="parcel id column, rasterized as the parcel_id layer")
    resolution: float | None = Field(
        None, gt=0, description="metres of the label grid, nested in the base grid (e.g. 2.5 or 5 for 10); "
        "default: the base grid"
    )  # fmt: skip


class PatchConfig(_Model):
    size: int = Field(64, ge=8, le=4096)
    stride: int | None = Field(None, ge=1)
    mode: Literal["grid", "labelled", "parcels"] = Field(
        "grid", description="every window, windows with labels, or windows centred on parcels"
    )
    min_labelled_fraction: float = Field(0.0, ge=0, le=1, description="labelled mode: least share of parcels")


class TimeseriesConfig(_Model):
    mask: Literal["auto", "nodata", "scl", "qa_pixel"] = Field(
        "auto",
        description="source of the per-date valid mask: nodata (any band has data), scl (also not cloud, "
        "shadow, cirrus or defective by the Sentinel-2 scene classification; the products need an SCL asset), "
        "qa_pixel (Landsat: none of the qa_pixel_invalid bits set), or auto: scl when every selected product "
        "carries an SCL asset, qa_pixel when every one is a Landsat scene with qa_pixel, else nodata "
        "(dataset.json records which)",
    )
    scl_invalid: tuple[int, ...] = Field(
        (0, 1, 3, 8, 9, 10), description="SCL classes that are not valid, with mask: scl (or auto resolved to scl)"
    )
    qa_pixel_invalid: tuple[str, ...] = Field(
        QA_PIXEL_INVALID,
        description="Landsat QA_PIXEL bits that make a pixel invalid, with mask: qa_pixel (or auto resolved to it): "
        f"names of {', '.join(QA_PIXEL_BITS)}",
    )

    @field_validator("qa_pixel_invalid", mode="after")
    @classmethod
    def _known_bits(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        qa_bits(value)  # refuses a name that is not a QA_PIXEL bit
        return tuple(sorted(set(value), key=QA_PIXEL_BITS.__getitem__))

    min_valid_fraction: float = Field(0.5, ge=0, le=1, description="dates below this valid share are dropped")
    min_dates: int = Field(1, ge=1, description="samples with fewer kept dates are dropped (and counted)")


class SplitConfig(_Model):
    block_size: float = Field(5120.0, gt=0, description="metres; patches of one block share a split")
    fractions: tuple[float, float, float] = Field((0.8, 0.1, 0.1), description="train, val, test")
    seed: int = 0


class HrConfig(_Model):
    """A finer image source paired with every sample (super-resolution): one mosaic, on the grid nested in it."""

    source: ExistingPath = Field(description="static STAC catalog.json, ItemCollection or FeatureCollection file")
    collection: str | None = None
    bands: tuple[str, ...] = Field(min_length=1, description="asset keys of the HR products")
    resolution: float = Field(gt=0, description="metres; must divide the grid resolution (e.g. 2.5 for 10)")
    modifier: str | None = Field(
        None,
        description="package.module:function that signs the HR items (as catalog.modifier does the others), e.g. "
        "planetary_computer:sign_inplace for the Planetary Computer's NAIP",
    )


class S1Config(_Model):
    """The Sentinel-1 products (format 1.1): their own catalog and their own date selection (their own dates)."""

    source: Annotated[str, AfterValidator(_source)] = Field(
        description="STAC API root URL, or a static catalog.json, ItemCollection or FeatureCollection file"
    )
    kind: Literal["auto", "stac-api", "static"] = "auto"
    collection: str | None = Field(None, description="e.g. sentinel-1-grd or sentinel-1-rtc")
    modifier: str | None = Field(
        None,
        description="package.module:function that signs the Sentinel-1 items (as catalog.modifier does the "
        "others), e.g. planetary_computer:sign_inplace",
    )
    min_valid_fraction: float = Field(
        0.5, ge=0, le=1, description="Sentinel-1 dates below this valid share are dropped"
    )
    min_dates: int = Field(
        1, ge=1, description="samples with fewer kept Sentinel-1 dates are dropped (and counted)"
    )


class OutputConfig(_Model):
    path: RelativePath
    formats: tuple[Literal["zarr", "lmdb"], ...] = ("zarr", "lmdb")
    shard_size: int = Field(16, ge=1, le=4096, description="samples per Zarr shard")
    lmdb_parts: int = Field(2, ge=1, le=64, description="LMDB environments written in parallel, one writer each")
    url: str | None = Field(
        None, description="fsspec URL (s3://, gs://, file://) the finished dataset is published to from path"
    )

    @field_validator("formats")
    @classmethod
    def _some(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("name at least one output format: zarr, lmdb")
        return value

    @field_validator("url")
    @classmethod
    def _plain_url(cls, value: str | None) -> str | None:
        if value is not None and ("://" not in value or "@" in value.split("://", 1)[1].split("/", 1)[0]):
            raise ValueError(
                "expected an fsspec URL such as s3://bucket/prefix without credentials "
                "(they come from the storage library's environment or config)"
            )
        return value


class RefreshConfig(_Model):
    """What ``eoshard refresh`` looks for besides acquisitions newer than the dataset's newest date."""

    reprocessed: bool = Field(
        False, description="also rebuild held dates that gained products (e.g. a newer processing baseline)"
    )


class BuildConfig(_Model):
    """Everything ``eoshard build`` needs."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    catalog: CatalogConfig
    aoi: ExistingPath | Bbox = Field(description="vector file, or minx,miny,maxx,maxy in EPSG:4326")
    period: PeriodConfig
    bands: tuple[str, ...] = Field(min_length=1)
    grid: GridConfig = GridConfig()
    cube: CubeConfig = CubeConfig()
    labels: LabelsConfig | None = None
    patches: PatchConfig = PatchConfig()
    timeseries: TimeseriesConfig = TimeseriesConfig()
    splits: SplitConfig = SplitConfig()
    output: OutputConfig
    hr: HrConfig | None = None
    s1: S1Config | None = Field(None, description="Sentinel-1 products for the bands vv, vh (format 1.1)")

    @model_validator(mode="after")
    def _finer_grids_nest(self) -> BuildConfig:
        finer = {"hr": self.hr.resolution if self.hr else None}
        finer["labels"] = self.labels.resolution if self.labels else None
        for section, resolution in finer.items():
            factor = None if resolution is None else self.grid.resolution / resolution
            if factor is not None and (factor < 1 or abs(factor - round(factor)) > 1e-9):
                raise ValueError(
                    f"{section}.resolution {resolution:g} m must divide grid.resolution {self.grid.resolution:g} m "
                    "(e.g. 2.5 or 5 for 10), so that each patch nests in the finer grid"
                )
        return self

    refresh: RefreshConfig = RefreshConfig()

    @model_validator(mode="after")
    def _s1_bands_have_products(self) -> BuildConfig:
        sar = [b for b in self.bands if band_sensor(b) == S1]
        if sar and self.s1 is None:
            raise ValueError(
                f"bands {sar} are Sentinel-1 bands: add an s1 section naming their products (s1: {{source: ..., "
                "collection: ...}}), or drop them from bands"
            )
        if self.s1 is not None and not sar:
            raise ValueError("the s1 section needs Sentinel-1 bands (vv, vh) in bands: add them or remove s1")
        return self

    @model_validator(mode="after")
    def _mode_has_labels(self) -> BuildConfig:
        if self.patches.mode != "grid" and self.labels is None:
            raise ValueError(
                f"patches.mode {self.patches.mode!r} needs labels: add a labels section or use mode 'grid'"
            )
        return self

    @model_validator(mode="after")
    def _index_bands_are_loaded(self) -> BuildConfig:
        for name, expression in self.cube.indices.items():
            missing = [b for b in expression_bands(expression) if b not in self.bands]
            if missing:
                raise ValueError(f"cube.indices.{name} reads band(s) {missing}: add them to bands")
            sar = [b for b in expression_bands(expression) if band_sensor(b) == S1]
            if sar:
                raise ValueError(
                    f"cube.indices.{name} reads Sentinel-1 band(s) {sar}, whose dates are not the Sentinel-2 "
                    "dates: indices take Sentinel-2 bands only"
                )
        return self

    @field_validator("bands", mode="after")
    @classmethod
    def _canonical_bands(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """``red``, ``b4`` and ``B04`` name one band: stored as ``B04`` (eoshard.pipeline.bands)."""
        bands = tuple(canonical_band(b) for b in value)
        twice = sorted({f"{a} ({b})" for a, b in zip(value, bands, strict=True) if bands.count(b) > 1})
        if twice:
            raise ValueError(f"bands {twice} name the same band twice: list each band once")
        return bands

    @field_validator("aoi", mode="after")
    @classmethod
    def _valid_bbox(cls, value: Path | Bbox) -> Path | Bbox:
        if isinstance(value, tuple):
            minx, miny, maxx, maxy = value
            if not (-180 <= minx < maxx <= 180 and -90 <= miny < maxy <= 90):
                raise ValueError(f"bbox {value} is not minx,miny,maxx,maxy in degrees with min < max")
        return value

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


_TYPE_TAGS = {"tuple", "list", "str", "int", "float", "bool", "dict"}


def _format_errors(source: str, err: ValidationError) -> str:
    """One line for one problem; a heading and one line per problem otherwise."""
    problems: list[str] = []
    for problem in err.errors():
        # union members (e.g. "a file or a bbox") add type tags to the location: keep the field path only
        parts = [str(p) for p in problem["loc"] if "[" not in str(p) and str(p) not in _TYPE_TAGS]
        where = ".".join(parts) or "(top level)"
        if any(p.startswith(f"{where}:") for p in problems):
            continue  # one line per field: the first union member's complaint says what is expected
        message = problem["msg"].removeprefix("Value error, ")
        got = problem.get("input")
        shown = "" if problem["type"] == "missing" or isinstance(got, dict | Path) else f" (got {got!r})"
        if problem["type"] == "extra_forbidden":
            message = f"not a setting{shown}{_known_keys_hint(parts)}"
            shown = ""
        problems.append(f"{where}: {message}{shown}")
    if len(problems) == 1:
        return f"{source}: {problems[0]}"
    return "\n".join([f"{source}: {len(problems)} problems in the config", *(f"  - {p}" for p in problems)])


def _known_keys_hint(parts: list[str]) -> str:
    """``; did you mean 'max_cloud'? the settings of catalog are: ...`` for the unknown key at ``parts``."""
    model: type[BaseModel] | None = BuildConfig
    for part in parts[:-1]:
        field = model.model_fields.get(part) if model is not None else None
        model = _model_of(field.annotation) if field is not None else None
    if model is None:
        return ""
    keys = list(model.model_fields)
    close = difflib.get_close_matches(parts[-1], keys, n=1)
    section = f"the settings of {'.'.join(parts[:-1])}" if len(parts) > 1 else "the top-level settings"
    return f"; {f'did you mean {close[0]!r}? ' if close else ''}{section} are: {', '.join(keys)}"


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The config section's model in a field's annotation (``HrConfig | None`` gives ``HrConfig``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def parse_config(data: Any, base_dir: Path, source: str = "config") -> BuildConfig:
    """Validate a config mapping; relative paths resolve against ``base_dir``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a YAML mapping of settings, got {type(data).__name__}")
    try:
        return BuildConfig.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as err:
        raise ConfigError(_format_errors(source, err)) from err


class _ConfigLoader(yaml.SafeLoader):
    """YAML's safe loader with dates left as text: the config's models parse them, so an impossible date
    (``2024-13-01``) is a field's error, not PyYAML's ``ValueError``."""


_ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_config(path: Path) -> BuildConfig:
    """Read and validate a YAML config file."""
    if path.is_dir():
        raise ConfigError(f"{path} is a folder: give the YAML config file (e.g. {path}/build.yaml)")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.load(path.read_text(), Loader=_ConfigLoader)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    return parse_config(data, path.parent, str(path))
