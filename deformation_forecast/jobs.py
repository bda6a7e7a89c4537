"""The jobs that cross the worker boundary, each parameter declared once (issue 20).

One frozen dataclass per job: :class:`TrainJob` (worker command ``train``, also what
``comparemodels`` sends for each network), :class:`ForecastJob` (``forecast``), :class:`InfoJob`
(``info``, the worker check) and :class:`CompareJob` (``comparemodels``: its baselines run in QGIS's
process, its networks as TrainJobs). Field names are the worker's keys (``job.time_step`` is what
was ``params["time_step"]``). Each field declares, once, through :func:`param`, its Processing
parameter (name, label, kind, bounds, unit, help, advanced placement; ``name=None`` for a field only
the worker knows), the way rasterio's ``rio/options.py`` declares each option once:

- the algorithms build their ``QgsProcessingParameter*`` from these declarations
  (:mod:`deformation_forecast.processing.jobparams`) and read the values back with
  :meth:`Job.from_parameters`, so a dialog's default or bound IS the dataclass's;
- the worker receives ``job.asdict()`` as JSON and rebuilds it with :meth:`Job.from_dict`, which
  refuses unknown keys; ``__post_init__`` checks types and bounds and raises
  :class:`~deformation_forecast.core.errors.InputError` naming the parameter and the fix.

No qgis and no TensorFlow here: the QGIS process and the worker both import this module.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from .core.errors import InputError

# -- parameter names (the Processing ids; the field of each is the name in lowercase) ------------
INPUT = "INPUT"
ARCHITECTURE = "ARCHITECTURE"
TIME_STEP = "TIME_STEP"
TEST_COUNT = "TEST_COUNT"
VALIDATION_FRACTION = "VALIDATION_FRACTION"
EPOCHS = "EPOCHS"
BATCH_SIZE = "BATCH_SIZE"
LEARNING_RATE = "LEARNING_RATE"
MAE_WEIGHT = "MAE_WEIGHT"
TILE_SIZE = "TILE_SIZE"
INTERVAL_DAYS = "INTERVAL_DAYS"
SEED = "SEED"
WIDTH = "WIDTH"
PATIENCE = "PATIENCE"
MAX_SECONDS = "MAX_SECONDS"
GRU_EPOCHS = "GRU_EPOCHS"
SAMPLES_PER_EPOCH = "SAMPLES_PER_EPOCH"
DEVICE = "DEVICE"
RESUME = "RESUME"
OUTPUT_MODEL = "OUTPUT_MODEL"
OUTPUT_REPORT = "OUTPUT_REPORT"
MODEL = "MODEL"
STEPS = "STEPS"
OUTPUT = "OUTPUT"
OUTPUT_RATE = "OUTPUT_RATE"
METHOD = "METHOD"
CONFIDENCE = "CONFIDENCE"
OUTPUT_LOWER = "OUTPUT_LOWER"
OUTPUT_UPPER = "OUTPUT_UPPER"
MODELS = "MODELS"
EXTENT = "EXTENT"
TREND_WINDOW = "TREND_WINDOW"
SVR_SAMPLES = "SVR_SAMPLES"
MLP_SAMPLES = "MLP_SAMPLES"
DATA_RANGE = "DATA_RANGE"
OUTPUT_TABLE = "OUTPUT_TABLE"
OUTPUT_ERRORS = "OUTPUT_ERRORS"

# -- the choices of the enum parameters (new values go at the end: qgis_process 3.22 takes enums
# by index) -----------------------------------------------------------------------------------------
DEVICES = ("auto", "gpu", "cpu")
ARCHITECTURES = ("cnn-phlstm", "cnn-phlstm-paper", "cnn-lstm", "cnn-lstm-paper")
METHODS = ("network", "best", "persistence", "trend")
METHOD_NAMES = (
    "Network (the trained model)",
    "Best on the model's iterative backtest (network, persistence or trend)",
    "Persistence (the last observation held)",
    "Linear trend per pixel (the model's trend window)",
)
COMPARE_MODELS = ("persistence", "linear-trend", "svr", "mlp", "cnn-lstm", "cnn-phlstm", "trend-annual")
COMPARE_MODEL_NAMES = (
    "Persistence (last frame)",
    "Linear trend per pixel",
    "SVR per pixel (scikit-learn)",
    "MLP per pixel (scikit-learn)",
    "CNN-LSTM (worker)",
    "CNN-PhLSTM (worker)",
    "Linear trend + annual sinusoid per pixel",
)
NETWORKS = ("cnn-lstm", "cnn-phlstm")  # the models of COMPARE_MODELS that train in the worker
# the prediction interval's confidence levels (core.intervals.LEVELS: 0.50 .. 0.99)
CONFIDENCE_MIN, CONFIDENCE_MAX = 0.5, 0.99

# -- kinds of parameter: how the dialog shows a field and how from_parameters reads it ------------
INT = "int"
DOUBLE = "double"
BOOL = "bool"
ENUM = "enum"
RASTER = "raster"  # a raster layer: the job holds its file path
FILE = "file"  # an input file
FILE_OUT = "file_out"  # a file destination
RASTER_OUT = "raster_out"  # a raster destination
FOLDER_OUT = "folder_out"  # a folder destination
TABLE_OUT = "table_out"  # a table (feature sink): written by the algorithm, never in the job
EXTENT_KIND = "extent"  # an extent: the algorithm turns it into the job's value (needs the CRS)
STR = "str"  # worker-only text
ANY = "any"  # worker-only, checked where it is used
PATH_KINDS = (RASTER, FILE, FILE_OUT, RASTER_OUT, FOLDER_OUT)
NUMBER_KINDS = (INT, DOUBLE)


@dataclass(frozen=True)
class Param:
    """The declaration of one job field: its Processing parameter (``name`` None: the worker's
    only), the dialog's label, kind, bounds, unit (in the label; documentation here), help text,
    advanced placement and, for enums, the values the job holds and the labels the dialog shows."""

    name: str | None
    label: str = ""
    kind: str = INT
    minimum: float | None = None
    maximum: float | None = None
    unit: str = ""
    help: str = ""
    advanced: bool = False
    optional: bool = False  # the dialog may leave it empty
    options: tuple[str, ...] = ()
    option_labels: tuple[str, ...] = ()  # default: the options themselves
    multiple: bool = False
    file_filter: str = ""
    create_by_default: bool = True  # an optional destination is created unless unticked

    @property
    def labels(self) -> tuple[str, ...]:
        return self.option_labels or self.options


def param(name: str | None, default: Any = dataclasses.MISSING, **declaration: Any) -> Any:
    """A dataclass field declared with its :class:`Param` (``default`` omitted: required)."""
    meta = {"param": Param(name, **declaration)}
    if isinstance(default, list | dict | set):
        raise TypeError("use a tuple for a sequence default")
    return field(default=default, metadata=meta)


def worker(default: Any, kind: str = ANY, **declaration: Any) -> Any:
    """A field only the worker knows (no dialog parameter)."""
    return param(None, default, kind=kind, **declaration)


J = TypeVar("J", bound="Job")


class Job:
    """What every job shares: declarations, validation, JSON and Processing round-trips."""

    COMMAND: ClassVar[str] = ""  # the worker command that runs it ("" = none: runs in QGIS)

    # -- declarations ----------------------------------------------------------------------------
    @classmethod
    def declarations(cls) -> Iterator[tuple[str, Param, dataclasses.Field]]:
        """(field name, Param, Field) of every field, in declaration order."""
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            yield f.name, f.metadata["param"], f

    @classmethod
    def parameters(cls) -> list[tuple[str, Param, Any]]:
        """(field name, Param, dialog default) of the fields the dialog shows, in its order; the
        default is None for a required field, the index (indexes) for an enum."""
        out = []
        for name, p, f in cls.declarations():
            if p.name is None:
                continue
            out.append((name, p, dialog_default(p, f.default)))
        return out

    @classmethod
    def declaration(cls, parameter_name: str) -> Param:
        for _, p, _ in cls.declarations():
            if p.name == parameter_name:
                return p
        raise KeyError(parameter_name)

    # -- validation ----------------------------------------------------------------------------
    def __post_init__(self) -> None:
        for name, p, f in self.declarations():
            value = _checked(p, name, getattr(self, name), f.default is dataclasses.MISSING)
            object.__setattr__(self, name, value)

    # -- JSON ----------------------------------------------------------------------------------
    def asdict(self) -> dict[str, Any]:
        """Every field by its key, JSON-ready (tuples as lists)."""
        return {name: _plain(getattr(self, name)) for name, _, _ in self.declarations()}

    def to_json(self) -> str:
        return json.dumps(self.asdict())

    @classmethod
    def from_dict(cls: type[J], values: Mapping[str, Any]) -> J:
        """The job of `values` (``asdict``'s, from JSON): unknown keys and missing required ones
        are refused with InputError naming them; a None value takes the field's default."""
        known = {name: (p, f) for name, p, f in cls.declarations()}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise InputError(
                f"{cls.__name__}: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(known)}. "
                "The plugin and its worker must be the same version: reinstall the plugin."
            )
        given = {k: v for k, v in values.items() if v is not None}
        missing = [
            (p.name or k)
            for k, (p, f) in known.items()
            if f.default is dataclasses.MISSING and k not in given
        ]
        if missing:
            raise InputError(f"{cls.__name__}: no value for {', '.join(missing)}; give it.")
        return cls(**given)

    # -- Processing ------------------------------------------------------------------------------
    @classmethod
    def from_parameters(
        cls: type[J], alg: Any, parameters: Mapping[str, Any], context: Any, **worker_fields: Any
    ) -> J:
        """The job of an algorithm's `parameters`, each field read through ``alg.parameterAs*``
        by its kind; `worker_fields` give the fields the algorithm resolves itself (the stack's
        checked path, a resolved output, the memory budget...) and override what it would read."""
        values: dict[str, Any] = {}
        for name, p, _ in cls.declarations():
            if name in worker_fields:
                values[name] = worker_fields.pop(name)
            elif p.name is not None and p.kind not in (TABLE_OUT, EXTENT_KIND):
                values[name] = read_parameter(alg, p, parameters, context)
        if worker_fields:
            raise TypeError(f"{cls.__name__} has no field(s) {', '.join(sorted(worker_fields))}")
        return cls(**values)


def dialog_default(p: Param, default: Any) -> Any:
    """The default a dialog shows for a field of default `default`."""
    if default is dataclasses.MISSING or p.kind in PATH_KINDS + (TABLE_OUT, EXTENT_KIND):
        return None
    if p.kind == ENUM:
        if p.multiple:
            return [p.options.index(v) for v in default]
        return p.options.index(default)
    return default


def read_parameter(alg: Any, p: Param, parameters: Mapping[str, Any], context: Any) -> Any:
    """The value of parameter `p` in `parameters`, read through the algorithm's ``parameterAs*``
    (duck-typed: any QgsProcessingAlgorithm)."""
    name = p.name
    if p.kind == INT:
        return alg.parameterAsInt(parameters, name, context)
    if p.kind == DOUBLE:
        return alg.parameterAsDouble(parameters, name, context)
    if p.kind == BOOL:
        return alg.parameterAsBool(parameters, name, context)
    if p.kind == ENUM:
        if p.multiple:
            return tuple(p.options[i] for i in alg.parameterAsEnums(parameters, name, context))
        return p.options[alg.parameterAsEnum(parameters, name, context)]
    if p.kind == RASTER:
        layer = alg.parameterAsRasterLayer(parameters, name, context)
        return layer.source().split("|")[0] if layer is not None else ""
    if p.kind == FILE:
        return alg.parameterAsFile(parameters, name, context)
    if p.kind == RASTER_OUT:
        return alg.parameterAsOutputLayer(parameters, name, context) or ""
    if p.kind == FOLDER_OUT and not alg.parameterAsString(parameters, name, context):
        return ""  # an optional folder left empty (its file output would be a temporary folder)
    if p.kind in (FILE_OUT, FOLDER_OUT):
        return alg.parameterAsFileOutput(parameters, name, context) or ""
    raise TypeError(f"{name}: a {p.kind} parameter is read by the algorithm")


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, tuple | list) else value


def _checked(p: Param, key: str, value: Any, required: bool) -> Any:
    """`value` of field `key` checked against its declaration (normalised: list -> tuple, an
    integral float -> int, an int -> float for a double); InputError naming it otherwise."""
    who = p.name or key
    if isinstance(value, list):
        value = tuple(value)
    if p.kind == INT:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{who}: {value!r} is not a whole number; give an integer.")
    elif p.kind == DOUBLE:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputError(f"{who}: {value!r} is not a number; give a number.")
        value = float(value)
    elif p.kind == BOOL:
        if not isinstance(value, bool):
            raise InputError(f"{who}: {value!r} is not true or false; give a boolean.")
    elif p.kind == ENUM:
        _check_choice(p, who, value)
    elif p.kind in PATH_KINDS + (STR,):
        if not isinstance(value, str):
            raise InputError(f"{who}: {value!r} is not a file path; give a path.")
        if required and not value:
            raise InputError(f"{who}: no {p.label or 'value'} given; give one.")
    if p.kind in NUMBER_KINDS:
        _check_bounds(p, who, value)
    return value


def _check_choice(p: Param, who: str, value: Any) -> None:
    values = value if p.multiple else (value,)
    if p.multiple and not isinstance(value, tuple):
        raise InputError(f"{who}: {value!r} is not a list of choices; give a list.")
    bad = [v for v in values if v not in p.options]
    if bad:
        raise InputError(f"{who}: {', '.join(map(repr, bad))} is not one of {', '.join(p.options)}.")
    if p.multiple and not values and not p.optional:
        raise InputError(f"{who}: choose at least one of {', '.join(p.options)}.")


def _check_bounds(p: Param, who: str, value: float) -> None:
    if p.minimum is not None and value < p.minimum:
        raise InputError(f"{who}: {value:g} is below the minimum {p.minimum:g}; give at least {p.minimum:g}.")
    if p.maximum is not None and value > p.maximum:
        raise InputError(f"{who}: {value:g} is above the maximum {p.maximum:g}; give at most {p.maximum:g}.")


# -- declarations several jobs share (one label, one default, one range) ----------------------------
TIME_STEP_MIN = 2  # a window of at least two dates: one gives the recurrent cells no sequence
TIME_STEP_MAX = 60
TEST_COUNT_MAX = 1000
EPOCHS_MAX = 10000
SEED_MAX = 2**31 - 1
MAX_SECONDS_MAX = 10**7
INTERVAL_DAYS_MAX = 3650


def _time_step() -> Any:
    return param(
        TIME_STEP,
        5,
        label="Input length (dates per window)",
        minimum=TIME_STEP_MIN,
        maximum=TIME_STEP_MAX,
        unit="dates",
    )


def _validation_fraction() -> Any:
    return param(
        VALIDATION_FRACTION,
        0.2,
        kind=DOUBLE,
        label="Validation fraction (of the dates before the test dates)",
        minimum=0.0,
        maximum=0.9,
        advanced=True,
    )


def _epochs() -> Any:
    return param(EPOCHS, 30, label="Epochs (at most)", minimum=1, maximum=EPOCHS_MAX)


def _seed() -> Any:
    return param(
        SEED, 42, label="Random seed (CPU runs are reproducible)", minimum=0, maximum=SEED_MAX, advanced=True
    )


def _max_seconds() -> Any:
    return param(
        MAX_SECONDS,
        0,
        label="Training time budget per network (seconds, 0 = none)",
        minimum=0,
        maximum=MAX_SECONDS_MAX,
        unit="s",
        advanced=True,
        help="Stops a network's training after this long (the best weights are kept).",
    )


def _device() -> Any:
    return param(DEVICE, "auto", kind=ENUM, label="Device", options=DEVICES)


def _input() -> Any:
    return param(INPUT, kind=RASTER, label="Deformation stack")


def _memory_budget() -> Any:
    # the worker's memory budget in MB; 0 = $DEFORMATION_FORECAST_MEMORY_MB, else the default (core.budget)
    return worker(0.0, DOUBLE, minimum=0.0, unit="MB")


@dataclass(frozen=True, kw_only=True)
class TrainJob(Job):
    """Worker command ``train`` (ml/train.py): the ``trainmodel`` dialog's fields, then the
    worker's own settings (ml/train.py documents them)."""

    COMMAND: ClassVar[str] = "train"

    input: str = _input()
    architecture: str = param(
        ARCHITECTURE, ARCHITECTURES[0], kind=ENUM, label="Architecture", options=ARCHITECTURES
    )
    time_step: int = _time_step()
    test_count: int = param(
        TEST_COUNT,
        -1,
        label="Test dates (the last ones)",
        minimum=-1,
        maximum=TEST_COUNT_MAX,
        help="The test dates score the model and calibrate the forecast's prediction intervals; 0 = none "
        "(then the model has no intervals). -1 takes what a short series can spare.",
    )
    validation_fraction: float = _validation_fraction()
    epochs: int = _epochs()
    batch_size: int = param(BATCH_SIZE, 4, label="Batch size", minimum=1, maximum=1024, advanced=True)
    learning_rate: float = param(
        LEARNING_RATE,
        5e-4,
        kind=DOUBLE,
        label="Learning rate (Adam)",
        minimum=1e-7,
        maximum=1.0,
        advanced=True,
    )
    mae_weight: float = param(
        MAE_WEIGHT,
        0.7,
        kind=DOUBLE,
        label="Loss weight of MAE (the rest goes to 1 - MS-SSIM, eq. 11)",
        minimum=0.0,
        maximum=1.0,
        advanced=True,
    )
    tile_size: int = param(
        TILE_SIZE,
        64,
        label="Tile size (pixels; rasters are tiled with overlap)",
        minimum=16,
        maximum=1024,
        unit="pixels",
        advanced=True,
    )
    interval_days: int = param(
        INTERVAL_DAYS,
        0,
        label="Regular interval (days, 0 = median acquisition interval)",
        minimum=0,
        maximum=INTERVAL_DAYS_MAX,
        unit="days",
        help="Irregular acquisitions are resampled linearly in time to this interval.",
    )
    seed: int = _seed()
    width: int = param(
        WIDTH,
        8,
        label="Network width (channels of the first encoder stage)",
        minimum=2,
        maximum=64,
        advanced=True,
    )
    patience: int = param(
        PATIENCE, 8, label="Early-stopping patience (epochs, 0 = off)", minimum=0, maximum=1000, advanced=True
    )
    max_seconds: int = _max_seconds()
    gru_epochs: int = param(
        GRU_EPOCHS, 64, label="Epochs of the GRU extremum compressor", minimum=1, maximum=10000, advanced=True
    )
    samples_per_epoch: int = param(
        SAMPLES_PER_EPOCH,
        0,
        label="Training tiles per epoch (0 = all)",
        minimum=0,
        maximum=10**7,
        advanced=True,
    )
    device: str = _device()
    resume: bool = param(
        RESUME, False, kind=BOOL, label="Resume an interrupted run from its checkpoint", advanced=True
    )
    output_model: str = param(
        OUTPUT_MODEL,
        kind=FILE_OUT,
        label="Trained model",
        file_filter="Deformation forecast model (*.dfmodel)",
    )
    # the dialog always asks for it; comparemodels' networks write none
    output_report: str = param(
        OUTPUT_REPORT, "", kind=FILE_OUT, label="Training report", file_filter="HTML files (*.html)"
    )
    # -- the worker's own settings ---------------------------------------------------------------
    memory_budget_mb: float = _memory_budget()
    # "auto": "trend" for cnn-phlstm / cnn-lstm (residual over a per-pixel linear trend, ml/trend.py),
    # "none" for the -paper networks; "last": increment over the last compressed frame (format 1)
    residual: str = worker("auto", STR)
    # dates in the per-pixel line; 0 = the best of trend.WINDOW_CANDIDATES at forecasting the
    # validation dates 1..20 steps ahead
    trend_window: int = worker(0, INT, minimum=0)
    lstm_units: tuple[int, ...] | None = worker(None)
    gru_time_step: int = worker(15, INT, minimum=1)
    gru_units: int = worker(16, INT, minimum=1)
    gru_batch_size: int = worker(64, INT, minimum=1)
    gru_learning_rate: float = worker(1e-3, DOUBLE, minimum=0.0)
    # XLA and float16: "auto" or a boolean (ml/distribute.py)
    jit_compile: Any = worker("auto")
    mixed_precision: Any = worker("auto")
    # validation tiles per epoch (a fixed seeded subset); 0 = all, at most max(4096, samples_per_epoch)
    validation_samples: int = worker(0, INT, minimum=0)
    # finite pixels (whole 64 x 64 blocks, seeded sample) for the trend window and the residual scale
    stats_pixels: int = worker(2**20, INT, minimum=1)
    # test-set scoring: at most this many blocks (up to 512 x 512 px) are scored; 0 = all
    test_tiles: int = worker(16, INT, minimum=0)
    # the raw test predictions (npz) for comparemodels; "" = none
    predictions: str = worker("", STR)
    # training across machines (ml/cluster.py): the collective's timeout in seconds
    cluster: bool = worker(False, BOOL)
    cluster_timeout: float = worker(0.0, DOUBLE, minimum=0.0)


@dataclass(frozen=True, kw_only=True)
class ForecastJob(Job):
    """Worker command ``forecast`` (ml/forecast.py)."""

    COMMAND: ClassVar[str] = "forecast"

    input: str = _input()
    # a file filter, not `extension`: a model saved under another name (model.dfm) is accepted
    # here and checked by its content when it is loaded
    model: str = param(
        MODEL,
        kind=FILE,
        label="Trained model",
        file_filter="Deformation forecast model (*.dfmodel);;All files (*)",
    )
    steps: int = param(
        STEPS, 0, label="Dates to forecast (0 = two years at the model's interval)", minimum=0, maximum=100000
    )
    device: str = _device()
    output: str = param(OUTPUT, kind=RASTER_OUT, label="Forecast stack")
    output_rate: str = param(
        OUTPUT_RATE,
        "",
        kind=RASTER_OUT,
        label="Annual rate per forecast year (mm/yr)",
        optional=True,
        create_by_default=False,
    )
    method: str = param(
        METHOD, METHODS[0], kind=ENUM, label="Forecasting method", options=METHODS, option_labels=METHOD_NAMES
    )
    confidence: float = param(
        CONFIDENCE,
        0.9,
        kind=DOUBLE,
        label="Confidence of the prediction interval",
        minimum=CONFIDENCE_MIN,
        maximum=CONFIDENCE_MAX,
    )
    output_lower: str = param(
        OUTPUT_LOWER,
        "",
        kind=RASTER_OUT,
        label="Lower bound of the prediction interval (mm)",
        optional=True,
        create_by_default=False,
    )
    output_upper: str = param(
        OUTPUT_UPPER,
        "",
        kind=RASTER_OUT,
        label="Upper bound of the prediction interval (mm)",
        optional=True,
        create_by_default=False,
    )
    memory_budget_mb: float = _memory_budget()
    block_size: int = worker(0, INT, minimum=0)  # block cores in pixels, 0 = as large as the budget allows


@dataclass(frozen=True, kw_only=True)
class InfoJob(Job):
    """Worker command ``info`` (the ``checkworker`` algorithm)."""

    COMMAND: ClassVar[str] = "info"

    device: str = _device()


@dataclass(frozen=True, kw_only=True)
class CompareJob(Job):
    """The ``comparemodels`` algorithm (core.comparison): the baselines run in QGIS's process, each
    network in the worker as the TrainJob of :meth:`network_job`."""

    input: str = _input()
    models: tuple[str, ...] = param(
        MODELS,
        COMPARE_MODELS,
        kind=ENUM,
        label="Models",
        options=COMPARE_MODELS,
        option_labels=COMPARE_MODEL_NAMES,
        multiple=True,
    )
    time_step: int = _time_step()
    test_count: int = param(
        TEST_COUNT, 20, label="Test dates (the last ones)", minimum=1, maximum=TEST_COUNT_MAX
    )
    epochs: int = _epochs()
    device: str = _device()
    seed: int = _seed()
    # (xmin, ymin, xmax, ymax) in the stack's CRS; None = the whole stack
    extent: tuple[float, ...] | None = param(
        EXTENT,
        None,
        kind=EXTENT_KIND,
        label="Compare on this area only (default: the whole stack)",
        optional=True,
    )
    validation_fraction: float = _validation_fraction()
    interval_days: int = param(
        INTERVAL_DAYS,
        0,
        label="Regular interval (days, 0 = median)",
        minimum=0,
        maximum=INTERVAL_DAYS_MAX,
        unit="days",
        advanced=True,
        help="The networks need a regular time step; every model sees the same resampled frames.",
    )
    trend_window: int = param(
        TREND_WINDOW,
        0,
        label="Linear trend window (frames, 0 = chosen on the validation dates)",
        minimum=0,
        advanced=True,
        help="Frames of the least-squares line fitted per pixel (on real time); 0 = the one of 1, 5, 10, "
        "20, 40 that forecasts the validation dates best 1..20 steps ahead, as the networks' own trend.",
    )
    svr_samples: int = param(
        SVR_SAMPLES,
        1000,
        label="SVR training samples",
        minimum=50,
        advanced=True,
        help="(pixel, date) samples the RBF SVR is fitted on (its cost grows with their square).",
    )
    mlp_samples: int = param(
        MLP_SAMPLES,
        200000,
        label="MLP training samples",
        minimum=100,
        advanced=True,
        help="At most this many (pixel, date) samples train the MLP (early stopping on validation).",
    )
    max_seconds: int = _max_seconds()
    data_range: float = param(
        DATA_RANGE,
        0.0,
        kind=DOUBLE,
        label="Data range for SSIM/PSNR (0 = observed range)",
        minimum=0.0,
        unit="mm",
        advanced=True,
        help="L in SSIM's constants and PSNR = 10 log10(L²/MSE); 0 = max - min of the observed test frames.",
    )
    output_table: str = param(OUTPUT_TABLE, "", kind=TABLE_OUT, label="Comparison table")
    output_report: str = param(
        OUTPUT_REPORT,
        "",
        kind=FILE_OUT,
        label="Comparison report",
        file_filter="HTML files (*.html)",
        optional=True,
    )
    output_errors: str = param(
        OUTPUT_ERRORS,
        "",
        kind=FOLDER_OUT,
        label="Absolute error stacks",
        optional=True,
        create_by_default=False,
    )
    memory_budget_mb: float = _memory_budget()

    @property
    def networks(self) -> list[str]:
        return [m for m in self.models if m in NETWORKS]

    @property
    def baselines(self) -> list[str]:
        return [m for m in self.models if m not in NETWORKS]

    def network_job(self, model: str, stack: str, interval_days: int, folder: str) -> TrainJob:
        """The worker's training of network `model` on `stack` (the comparison's, maybe cropped) at
        the comparison's resolved interval, writing its model and raw test predictions in `folder`."""
        return TrainJob(
            input=stack,
            architecture=model,
            time_step=self.time_step,
            test_count=self.test_count,
            validation_fraction=self.validation_fraction,
            interval_days=interval_days,
            epochs=self.epochs,
            device=self.device,
            seed=self.seed,
            max_seconds=self.max_seconds,
            output_model=os.path.join(folder, "model.dfmodel"),
            predictions=os.path.join(folder, "predictions.npz"),
            test_tiles=0,  # every block: the networks are scored on the baselines' pixels
            memory_budget_mb=self.memory_budget_mb,
        )
