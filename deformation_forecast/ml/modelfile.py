"""The trained-model file: ONE zip with the network, the GRU compressor and a JSON description.

Contents: ``meta.json`` (format id and version, architecture, time step, interval, tile, grid
(CRS WKT, transform, width, height), training dates, compressor parameters, metrics, history),
``network.keras`` and ``compressor.keras`` (Keras 3 native files). Loading uses Keras's safe mode
(no Python code is deserialized, nothing is unpickled) and refuses a file that is not ours with a
clear message; :func:`check_fits` says why a stack does not fit a model.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.errors import InputError
from ..core.stack import StackInfo, atomic_path

FORMAT = "deformation_forecast.model"
# 1: compressed-frame networks only. 2: adds "residual" ("none" | "last" | "trend") and, for "trend"
# (the default networks since format 2), trend_window / residual_scale / frame_scale (ml/trend.py).
# Format-1 files are read as before (no "residual": the compressed pipeline); a plugin that reads only
# format 1 refuses format 2 with "written by a newer plugin".
VERSION = 2
EXTENSION = ".dfmodel"


@dataclass(frozen=True)
class TrendParams:
    """The residual-over-the-trend settings of a "trend" network (ml/trend.py)."""

    trend_window: int
    residual_scale: float
    frame_scale: float

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TrendParams:
        return cls(int(d["trend_window"]), float(d["residual_scale"]), float(d["frame_scale"]))

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ModelMeta:
    """The description of a model file (``meta.json``), typed and versioned.

    ``format_version`` is the file's format (``version`` in the JSON; see VERSION); format 1 has no
    ``residual`` (None here: the compressed pipeline) and no trend. The JSON keeps the layout of
    format 2 (the trend settings at the top level); keys this plugin does not know stay in
    ``extra`` and are written back unchanged."""

    architecture: str
    time_step: int
    interval_days: int
    tile: int
    overlap: int
    grid: dict[str, Any]  # crs_wkt, transform (6 floats), width, height: grid_of()
    compressor: dict[str, Any]  # ExtremumGRU.params()
    residual: str | None = None  # "none" | "last" | "trend"; None: format 1 (compressed frames)
    trend: TrendParams | None = None  # for residual "trend"
    trend_line: dict[str, Any] | None = None  # the forecast's base line (ml/trend.py stable_line)
    width: int = 8
    lstm_units: list[int] | None = None
    mae_weight: float = 0.7
    units: str = ""
    dates: list[str] = field(default_factory=list)  # the regular training dates (ISO)
    source_dates: list[str] = field(default_factory=list)
    test_dates: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    test_scoring: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None  # prediction intervals (core/intervals.py)
    backtest: dict[str, Any] | None = None  # the iterative backtest per horizon (issue 17)
    history: dict[str, list[float]] = field(default_factory=dict)
    gru_history: dict[str, Any] = field(default_factory=dict)
    extremes: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)  # the training parameters and epochs_run
    device: str = ""
    train_seconds: float = 0.0
    created: str = ""
    format_version: int = VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def compressor_time_step(self) -> int:
        return int(self.compressor["time_step"])

    @classmethod
    def from_json(cls, d: dict[str, Any], name: str = "") -> ModelMeta:
        """The description read from a model file's JSON (any format up to VERSION)."""
        known = {f.name for f in dataclasses.fields(cls)} - {"trend", "format_version", "extra"}
        trend_keys = ("trend_window", "residual_scale", "frame_scale")
        values = {k: v for k, v in d.items() if k in known}
        try:
            trend = TrendParams.from_json(d) if d.get("residual") == "trend" else None
            meta = cls(
                **values,
                trend=trend,
                format_version=int(d.get("version", 1)),
                extra={k: v for k, v in d.items() if k not in known | {"format", "version", *trend_keys}},
            )
            for k in ("time_step", "interval_days", "tile", "overlap"):
                int(getattr(meta, k))
            meta.grid["width"], meta.grid["height"], meta.compressor["time_step"]  # noqa: B018
        except (TypeError, KeyError, ValueError) as e:
            raise InputError(
                f"MODEL: {name!r} has an incomplete or damaged description ({type(e).__name__}: {e}); "
                "train the model again."
            ) from e
        return meta

    def to_json(self) -> dict[str, Any]:
        """The JSON of ``meta.json`` in the current format (the layout of format 2)."""
        out: dict[str, Any] = {"format": FORMAT, "version": VERSION}
        for f in dataclasses.fields(self):
            if f.name in ("trend", "format_version", "extra"):
                continue
            out[f.name] = getattr(self, f.name)
        if self.trend is not None:
            out.update(self.trend.to_json())
        return {**self.extra, **out}


def grid_of(info: StackInfo) -> dict[str, Any]:
    return {
        "crs_wkt": info.crs.to_wkt() if info.crs else "",
        "transform": [float(v) for v in tuple(info.transform)[:6]],
        "width": int(info.width),
        "height": int(info.height),
    }


def save_model(path: str, network: Any, compressor_model: Any, meta: ModelMeta) -> str:
    """Write the model file atomically (temp name + rename): nothing partial is ever visible."""
    with tempfile.TemporaryDirectory(prefix="df_model_") as tmp:
        net_path = os.path.join(tmp, "network.keras")
        gru_path = os.path.join(tmp, "compressor.keras")
        network.save(net_path)
        compressor_model.save(gru_path)
        with atomic_path(path) as partial, zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("meta.json", json.dumps(meta.to_json(), indent=1, default=_json_default))
            z.write(net_path, "network.keras")
            z.write(gru_path, "compressor.keras")
    return path


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def read_meta(path: str) -> dict[str, Any]:
    """The JSON description of a model file as it is stored (for tools that show it; the plugin
    reads :func:`read_model_meta`); InputError if the file is not one of ours."""
    not_ours = (
        f"MODEL: {os.path.basename(path)!r} is not a deformation forecast model (a {EXTENSION} file "
        "written by 'Train CNN-PhLSTM forecaster')"
    )
    if os.path.isdir(path):
        raise InputError(f"MODEL: {path!r} is a folder; give the model file ({EXTENSION}) itself.")
    if not os.path.isfile(path):
        raise InputError(f"MODEL: file {path!r} not found.")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read(4)
        if head == b"PK\x03\x04":  # a zip whose end (the central directory) is missing
            raise InputError(
                f"MODEL: {os.path.basename(path)!r} is not a readable deformation forecast model: it is "
                "damaged or truncated (an incomplete copy or download?); copy it again or train a new model."
            )
        raise InputError(not_ours + ".")
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        if not {"meta.json", "network.keras", "compressor.keras"} <= names:
            raise InputError(not_ours + f": it lacks {sorted({'meta.json', 'network.keras'} - names)}.")
        _check_sizes(z, path)
        try:
            meta = json.loads(z.read("meta.json").decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(not_ours + f": its description is unreadable ({e}).") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(not_ours + ".")
    if int(meta.get("version", 0)) > VERSION:
        raise InputError(
            f"MODEL: {os.path.basename(path)!r} was written by a newer plugin (model format "
            f"{meta.get('version')}, this plugin reads up to {VERSION}); update the plugin."
        )
    return meta


def read_model_meta(path: str) -> ModelMeta:
    """The typed description of a model file; InputError if the file is not one of ours."""
    return ModelMeta.from_json(read_meta(path), os.path.basename(path))


def _check_sizes(z: zipfile.ZipFile, path: str) -> None:
    """Cap what the model file (and the Keras archives inside it) would expand to (zip bombs)."""
    from ..core.validity import check_zip_sizes

    what = f"MODEL {os.path.basename(path)!r}"
    check_zip_sizes(z, what)
    if z.getinfo("meta.json").file_size > 16 * 2**20:
        raise InputError(f"{what}: its description (meta.json) is far too large: not one of our models.")


def _check_inner(z: zipfile.ZipFile, path: str) -> None:
    """Cap the Keras archives inside the model file before they are extracted and loaded."""
    from ..core.validity import check_zip_sizes

    what = f"MODEL {os.path.basename(path)!r}"
    for inner in ("network.keras", "compressor.keras"):
        try:
            with z.open(inner) as f, zipfile.ZipFile(f) as k:
                check_zip_sizes(k, f"{what} ({inner})")
        except zipfile.BadZipFile as e:
            raise InputError(f"{what}: {inner} is not a Keras archive ({e}); the file is damaged.") from e


def load_model(path: str) -> tuple[Any, Any, ModelMeta]:
    """(network, compressor Keras model, meta) of a model file, loaded in Keras safe mode."""
    import keras

    from . import network as _network  # noqa: F401  (registers the custom layers)

    meta = read_model_meta(path)
    with tempfile.TemporaryDirectory(prefix="df_model_") as tmp, zipfile.ZipFile(path) as z:
        _check_inner(z, path)
        z.extract("network.keras", tmp)
        z.extract("compressor.keras", tmp)
        net = keras.saving.load_model(os.path.join(tmp, "network.keras"), compile=False, safe_mode=True)
        gru = keras.saving.load_model(os.path.join(tmp, "compressor.keras"), compile=False, safe_mode=True)
    return net, gru, meta


def check_fits(meta: ModelMeta, info: StackInfo, n_regular: int) -> None:
    """Refuse a stack whose grid, interval or length does not fit the model, saying why."""
    from rasterio.crs import CRS

    g = meta.grid
    name = os.path.basename(info.path)
    if (info.width, info.height) != (g["width"], g["height"]):
        raise InputError(
            f"The model was trained on a {g['width']} x {g['height']} grid; INPUT {name!r} is "
            f"{info.width} x {info.height}. Forecast the stack it was trained on (or one on the same grid)."
        )
    crs_model = CRS.from_wkt(g["crs_wkt"]) if g["crs_wkt"] else None
    if (crs_model or CRS()) != (info.crs or CRS()):
        raise InputError(
            f"The model's CRS ({crs_model.to_string() if crs_model else 'none'}) differs from the CRS of "
            f"INPUT {name!r} ({info.crs.to_string() if info.crs else 'none'})."
        )
    ta, tb = np.array(g["transform"]), np.array(tuple(info.transform)[:6])
    if not np.allclose(ta, tb, atol=1e-6 * max(abs(ta[0]), abs(ta[4]), 1e-9)):
        raise InputError(
            f"INPUT {name!r} is not on the model's grid (geotransform {tuple(tb)} vs {tuple(ta)})."
        )
    from ..core.dates import median_interval

    interval = int(meta.interval_days)
    if len(info.dates) > 1 and median_interval(info.dates) > 2 * interval:
        raise InputError(
            f"INPUT {name!r} has a median acquisition interval of {median_interval(info.dates)} days, more "
            f"than twice the model's interval of {interval} days: resampling would invent most dates."
        )
    need = int(max(meta.time_step, meta.compressor_time_step + 1)) + 1
    if n_regular < need:
        raise InputError(
            f"INPUT {name!r} gives {n_regular} dates at the model's interval of {interval} days; the model "
            f"needs at least {need} (its time step is {meta.time_step}, the compressor's "
            f"{meta.compressor_time_step})."
        )
