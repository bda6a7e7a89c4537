"""Compare forecasting models (Table III): baselines in this process, networks in the worker."""

from __future__ import annotations

import math
import os
import re
import tempfile
import time

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
)

from ..core.stack import atomic_path, crop_stack, extent_window
from . import result_hooks
from .base import DEVICES, DeformationAlgorithm, default_device_index
from .tables import table_sink, write_table

# new models go at the end: qgis_process 3.22 takes enum values by index
MODELS = ["persistence", "linear-trend", "svr", "mlp", "cnn-lstm", "cnn-phlstm", "trend-annual"]
MODEL_NAMES = [
    "Persistence (last frame)",
    "Linear trend per pixel",
    "SVR per pixel (scikit-learn)",
    "MLP per pixel (scikit-learn)",
    "CNN-LSTM (worker)",
    "CNN-PhLSTM (worker)",
    "Linear trend + annual sinusoid per pixel",
]
NETWORKS = ("cnn-lstm", "cnn-phlstm")
NUMBER_METRICS = ("MAE", "RMSE", "SSIM", "MS_SSIM", "PSNR", "R2")
TABLE_COLUMNS = [
    ("model", "str"),
    ("mode", "str"),
    ("MAE", "float"),
    ("MSE", "float"),
    ("RMSE", "float"),
    ("SSIM", "float"),
    ("MS_SSIM", "float"),
    ("PSNR", "float"),
    ("R2", "float"),
    ("SKILL", "float"),
    ("train_seconds", "float"),
    ("predict_seconds", "float"),
    ("device", "str"),
]


def add_skill(rows: list[dict]) -> None:
    """SKILL = 1 - MAE / MAE of persistence in the same mode (NaN without persistence)."""
    pers = {r["mode"]: float(r["MAE"]) for r in rows if r["model"] == "persistence"}
    for r in rows:
        ref = pers.get(r["mode"], float("nan"))
        r["SKILL"] = 1.0 - float(r["MAE"]) / ref if ref > 0 else float("nan")


def key(model: str) -> str:
    return re.sub(r"[^A-Z0-9]", "_", model.upper())


class CompareModels(DeformationAlgorithm):
    NAME = "comparemodels"
    DISPLAY = "Compare forecasting models"
    GROUP = "forecasting"
    TAGS = "table iii,svr,mlp,cnn-lstm,cnn-phlstm,baseline,persistence,trend,mae,ssim,psnr"
    HELP = (
        "<p>Scores forecasting models on the same test dates of one deformation stack, as the paper's "
        "Table III does for SVR, MLP, CNN-LSTM and CNN-PhLSTM: check here whether a network beats "
        "simple methods on your data before you trust it.</p><p><b>Models</b>: persistence (the last "
        "date held), a per-pixel linear trend, a per-pixel line plus an annual sinusoid (seasonal "
        "motion, fitted over the last two years), per-pixel SVR and MLP (scikit-learn, the pixel's "
        "previous values as features), and the CNN-LSTM and CNN-PhLSTM networks (trained in the "
        "TensorFlow worker). Simple baselines are often hard to beat.</p><p><b>Input length (dates per "
        "window)</b>: how many past dates each model sees to predict the next (5 in the paper). "
        "<b>Test dates (the last ones)</b>: the dates held out for scoring (20 in the paper); the "
        "dates before them are split in time order into training and validation (<b>Validation "
        "fraction</b>, advanced). <b>Epochs (at most)</b> and the <b>Training time budget per "
        "network</b> bound the training of the networks; <b>Device</b> auto uses a CUDA GPU when "
        "TensorFlow sees one.</p><p>The stack is first resampled to a regular interval (<b>Regular "
        "interval</b>, days; 0 = the median spacing of the acquisitions). <b>Linear trend window</b> "
        "(dates; 0 = chosen on the validation dates as the networks' own trend: the one of 1, 5, 10, "
        "20 and 40 dates that forecasts them best). The SVR is fitted on <b>SVR training samples</b> "
        "random (pixel, date) samples and predicts every pixel; the MLP on <b>MLP training "
        "samples</b>.</p><p><b>Compare on this area only</b>: trains and scores every model on an area "
        "of the stack, e.g. around the subsidence bowls. The networks are scored on every pixel of the "
        "test dates, which the worker must hold: a stack too large for the memory budget is refused up "
        "front, with an area, a number of test dates or a budget that would do.</p><p>Every model is "
        "scored <i>one step ahead</i> (each test date predicted from the observed dates before it: the "
        "paper's protocol) and <i>iteratively</i> over the test dates (predictions fed back as inputs: "
        "how a forecast is used). Outputs: the <b>Comparison table</b> (model, mode, MAE, MSE, RMSE in "
        "mm, SSIM, MS-SSIM, PSNR, R², skill = 1 - MAE / MAE of persistence in the same mode, seconds, "
        "device), the best model one step ahead and iteratively (least MAE), the <b>Comparison "
        "report</b> (HTML: the scatter plots of the paper's Fig. 19, the min/max trends of Fig. 18 and "
        "error maps) and a folder of <b>Absolute error stacks</b>, one per model. SSIM and PSNR use "
        "the range of the observed test values unless <b>Data range for SSIM/PSNR</b> (mm) fixes it. "
        "In the desktop the model comparison dock charts the table.</p>"
    )
    HELP_ANCHOR = "compare-forecasting-models-comparemodels"
    SHORT = "Scores persistence, trends, SVR, MLP and the networks on the same test dates of a stack, as the paper's Table III."

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Deformation stack"))
        self.addParameter(
            QgsProcessingParameterEnum(
                "MODELS", "Models", MODEL_NAMES, allowMultiple=True, defaultValue=list(range(len(MODELS)))
            )
        )
        integer = QgsProcessingParameterNumber.Integer
        self.addParameter(
            QgsProcessingParameterNumber("TIME_STEP", "Time step (input frames)", integer, 5, False, 1)
        )
        self.addParameter(
            QgsProcessingParameterNumber("TEST_COUNT", "Test dates (last)", integer, 20, False, 1)
        )
        self.addParameter(
            QgsProcessingParameterNumber("EPOCHS", "Epochs of the networks", integer, 30, False, 1)
        )
        self.addParameter(
            QgsProcessingParameterEnum(
                "DEVICE", "Device for the networks", DEVICES, defaultValue=default_device_index()
            )
        )
        self.addParameter(QgsProcessingParameterNumber("SEED", "Random seed", integer, 42, False, 0))
        self.addParameter(
            QgsProcessingParameterExtent(
                "EXTENT", "Compare on this area only (default: the whole stack)", optional=True
            )
        )
        adv = [
            QgsProcessingParameterNumber(
                "VALIDATION_FRACTION",
                "Validation fraction",
                QgsProcessingParameterNumber.Double,
                0.2,
                False,
                0,
                0.9,
            ),
            QgsProcessingParameterNumber(
                "INTERVAL_DAYS", "Regular interval (days, 0 = median)", integer, 0, False, 0
            ),
            QgsProcessingParameterNumber(
                "TREND_WINDOW",
                "Linear trend window (frames, 0 = chosen on the validation dates)",
                integer,
                0,
                False,
                0,
            ),
            QgsProcessingParameterNumber("SVR_SAMPLES", "SVR training samples", integer, 1000, False, 50),
            QgsProcessingParameterNumber("MLP_SAMPLES", "MLP training samples", integer, 200000, False, 100),
            QgsProcessingParameterNumber(
                "MAX_SECONDS", "Time budget per network (s, 0 = none)", integer, 0, False, 0
            ),
            QgsProcessingParameterNumber(
                "DATA_RANGE",
                "Data range for SSIM/PSNR (0 = observed range)",
                QgsProcessingParameterNumber.Double,
                0.0,
                False,
                0.0,
            ),
        ]
        helps = {
            "INTERVAL_DAYS": "The networks need a regular time step; every model sees the same resampled frames.",
            "TREND_WINDOW": "Frames of the least-squares line fitted per pixel (on real time); 0 = the one of 1, 5, 10, 20, 40 that forecasts the validation dates best 1..20 steps ahead, as the networks' own trend.",
            "SVR_SAMPLES": "(pixel, date) samples the RBF SVR is fitted on (its cost grows with their square).",
            "MLP_SAMPLES": "At most this many (pixel, date) samples train the MLP (early stopping on validation).",
            "MAX_SECONDS": "Stops a network's training after this long (the best weights are kept).",
            "DATA_RANGE": "L in SSIM's constants and PSNR = 10 log10(L²/MSE); 0 = max - min of the observed test frames.",
        }
        for p in adv:
            p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            if p.name() in helps and hasattr(p, "setHelp"):
                p.setHelp(helps[p.name()])
            self.addParameter(p)
        self.addParameter(table_sink("OUTPUT_TABLE", "Comparison table", optional=False))
        self.addParameter(
            QgsProcessingParameterFileDestination(
                "OUTPUT_REPORT",
                "Comparison report",
                "HTML files (*.html)",
                optional=True,
                createByDefault=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterFolderDestination(
                "OUTPUT_ERRORS", "Absolute error stacks", optional=True, createByDefault=False
            )
        )
        self.addOutput(QgsProcessingOutputString("BEST_MODEL", "Best model (one-step MAE)"))
        self.addOutput(
            QgsProcessingOutputString(
                "BEST_MODEL_ITERATIVE", "Best model (iterative MAE, as forecast is used)"
            )
        )
        self.addOutput(QgsProcessingOutputNumber("DATA_RANGE_USED", "Data range used (mm)"))
        self.addOutput(QgsProcessingOutputNumber("TEST_DATES", "Test dates"))
        for m, label in zip(MODELS, MODEL_NAMES, strict=False):
            for k in NUMBER_METRICS:
                self.addOutput(QgsProcessingOutputNumber(f"{k}_{key(m)}", f"{label}: one-step {k}"))

    def compute(self, parameters, context, feedback):
        import shutil

        import numpy as np
        from qgis.core import QgsProcessingUtils

        from ..core import baselines as bl
        from ..core import evaluation as ev
        from ..core.comparison import StreamedComparison

        info = self.stack_info(parameters, "INPUT", context, observed=True)
        chosen = [MODELS[i] for i in self.parameterAsEnums(parameters, "MODELS", context)]
        if not chosen:
            raise QgsProcessingException("MODELS: choose at least one model.")
        ts = self.parameterAsInt(parameters, "TIME_STEP", context)
        test_count = self.parameterAsInt(parameters, "TEST_COUNT", context)
        val_fraction = self.parameterAsDouble(parameters, "VALIDATION_FRACTION", context)
        interval = self.parameterAsInt(parameters, "INTERVAL_DAYS", context)
        epochs = self.parameterAsInt(parameters, "EPOCHS", context)
        device = DEVICES[self.parameterAsEnum(parameters, "DEVICE", context)]
        seed = self.parameterAsInt(parameters, "SEED", context)
        data_range = self.parameterAsDouble(parameters, "DATA_RANGE", context) or None
        options = bl.BaselineOptions(
            trend_window=self.parameterAsInt(parameters, "TREND_WINDOW", context),
            svr_samples=self.parameterAsInt(parameters, "SVR_SAMPLES", context),
            mlp_samples=self.parameterAsInt(parameters, "MLP_SAMPLES", context),
            seed=seed,
        )
        report_path = self.parameterAsFileOutput(parameters, "OUTPUT_REPORT", context)
        errors_dir = self.parameterAsString(parameters, "OUTPUT_ERRORS", context)
        if errors_dir:
            errors_dir = self.parameterAsFileOutput(parameters, "OUTPUT_ERRORS", context)
        self.check_output_not_input(report_path, info.path)

        feedback.pushInfo(f"Reading {info.path}: {info.count} dates, {info.width} x {info.height} pixels")
        window = None
        if parameters.get("EXTENT") not in (None, ""):
            crs = self.parameterAsRasterLayer(parameters, "INPUT", context).crs()
            ext = self.parameterAsExtent(parameters, "EXTENT", context, crs)
            window = extent_window(info, (ext.xMinimum(), ext.yMinimum(), ext.xMaximum(), ext.yMaximum()))
        networks = [m for m in chosen if m in NETWORKS]
        work = tempfile.mkdtemp(prefix="df_compare_", dir=QgsProcessingUtils.tempFolder())
        try:
            if window is not None:
                self._check_networks_fit(networks, int(window.height), int(window.width), test_count, True)
                info = crop_stack(info, window, os.path.join(work, "extent.tif"), self.memory_mb)
                feedback.pushInfo(
                    f"EXTENT: comparing on {info.width} x {info.height} pixels from column "
                    f"{int(window.col_off)}, row {int(window.row_off)}"
                )
                self.check_canceled(feedback)
            cmp = StreamedComparison(
                info.path, work, ts, test_count, val_fraction, interval, mb=self.memory_mb
            )
            self._check_networks_fit(
                networks, info.height, info.width, len(cmp.split.test), window is not None
            )
            feedback.pushInfo(
                f"Regular interval {cmp.interval} days, {len(cmp.dates)} frames; {cmp.split.describe()}; "
                f"streamed in {len(cmp.windows)} window(s)"
            )
            if cmp.interpolated:
                feedback.pushInfo(
                    f"{cmp.interpolated} grid dates are not acquisition dates: their observations are "
                    "interpolated."
                )
            baselines = [m for m in chosen if m not in NETWORKS]
            n_steps = len(networks) + 2  # baselines, each network, scores
            notes: list[str] = []
            if baselines:
                feedback.pushInfo("— " + ", ".join(ev.label(m) for m in baselines))

            def progress(frac, msg):
                self.check_canceled(feedback)
                feedback.setProgress(100.0 * frac / n_steps)

            try:
                runs = {
                    r.model: r for r in cmp.run_baselines(baselines, options, progress, feedback.isCanceled)
                }
            except bl.Cancelled as e:
                raise QgsProcessingException("Cancelled; nothing was written.") from e
            for k, model in enumerate(networks):
                self.check_canceled(feedback)
                feedback.pushInfo(f"— {ev.label(model)}")
                runs[model] = self._network(
                    model,
                    info.path,
                    cmp,
                    ts,
                    test_count,
                    val_fraction,
                    epochs,
                    device,
                    seed,
                    parameters,
                    context,
                    feedback,
                    100.0 * (k + 1) / n_steps,
                    100.0 / n_steps,
                )
            ordered = [runs[m] for m in chosen]
            if errors_dir:
                os.makedirs(errors_dir, exist_ok=True)
            try:
                rows, L, figures = cmp.score(
                    ordered,
                    data_range,
                    errors_dir or None,
                    lambda f: feedback.setProgress(100.0 * (n_steps - 1 + f) / n_steps),
                    feedback.isCanceled,
                )
            except bl.Cancelled as e:
                raise QgsProcessingException("Cancelled; nothing was written.") from e
            for r in rows:
                run = runs[r["model"]]
                if r["mode"] == "one-step":
                    feedback.pushInfo(
                        f"{ev.label(r['model'])}: one-step {ev.mt.format_metrics(r)}; "
                        f"train {run.train_seconds:.1f} s, predict {run.predict_seconds:.1f} s on {run.device}"
                    )
                if run.notes == bl.NO_FINITE_PREDICTION and r["mode"] == "one-step":
                    feedback.reportError(f"{run.model}: {run.notes}", fatalError=False)
            add_skill(rows)
            feedback.pushInfo("\n" + ev.text_table(rows))
            dest = write_table(self, parameters, "OUTPUT_TABLE", context, TABLE_COLUMNS, rows)
            results = {"OUTPUT_TABLE": dest, "DATA_RANGE_USED": L, "TEST_DATES": len(cmp.split.test)}
            # the desktop's comparison dock (if loaded) shows the table once QGIS has loaded it
            result_hooks.attach(context, self.NAME, dest, feedback)
            one = [r for r in rows if r["mode"] == "one-step"]
            finite = [r for r in one if np.isfinite(r["MAE"])]
            results["BEST_MODEL"] = min(finite, key=lambda r: r["MAE"])["model"] if finite else ""
            it = [r for r in rows if r["mode"] == "iterative" and np.isfinite(r["MAE"])]
            results["BEST_MODEL_ITERATIVE"] = min(it, key=lambda r: r["MAE"])["model"] if it else ""
            for r in rows:
                feedback.pushInfo(
                    f"{ev.label(r['model'])} ({r['mode']}): skill vs persistence {r['SKILL']:.3f}"
                )
            for r in one:
                for m in NUMBER_METRICS:
                    v = float(r[m])
                    results[f"{m}_{key(r['model'])}"] = v if np.isfinite(v) else None
            if errors_dir:
                results["OUTPUT_ERRORS"] = errors_dir
            if report_path:
                if cmp.interpolated:
                    notes.append(
                        f"{cmp.interpolated} grid dates were not acquired; their observations are interpolated."
                    )
                page = ev.comparison_report_html(
                    rows,
                    figures,
                    cmp.dates,
                    cmp.observed_min,
                    cmp.observed_max,
                    cmp.test_dates,
                    L,
                    f"Regular interval {cmp.interval} days; {cmp.split.describe()}.",
                    notes,
                )
                with atomic_path(report_path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
                    fh.write(page)
                results["OUTPUT_REPORT"] = report_path
        finally:
            shutil.rmtree(work, ignore_errors=True)
        feedback.setProgress(100)
        return results

    def _check_networks_fit(self, networks, height: int, width: int, n_test: int, cropped: bool) -> None:
        """Refuse before any work when the worker could not hold the networks' whole test
        predictions (core.budget.test_predictions_fit), naming what would do."""
        from ..core.budget import (
            budget_mb,
            smallest_budget,
            test_predictions_bytes,
            test_predictions_fit,
            worker_pixel_bytes,
        )

        mb = self.memory_mb
        if not networks or test_predictions_fit(height, width, n_test, mb):
            return
        need = smallest_budget(lambda b: test_predictions_fit(height, width, n_test, b))
        side = math.isqrt(max(1, worker_pixel_bytes(mb) // 3 // test_predictions_bytes(1, 1, n_test)))
        raise QgsProcessingException(
            f"The networks ({', '.join(networks)}) are scored on every pixel of the {n_test} test dates: "
            f"{test_predictions_bytes(height, width, n_test) / 2**20:.0f} MB of predictions for "
            f"{'this EXTENT' if cropped else 'this stack'} of {width} x {height} pixels, more than the "
            f"worker may hold with the {budget_mb(mb):.0f} MB memory budget. Give an EXTENT of at most "
            f"about {side} x {side} pixels (e.g. around the deformation), fewer TEST_COUNT, leave the "
            f"networks out of MODELS, or raise the memory budget to {need} MB (plugin setting or "
            "DEFORMATION_FORECAST_MEMORY_MB)."
        )

    def _network(
        self,
        model,
        path,
        cmp,
        ts,
        test_count,
        val_fraction,
        epochs,
        device,
        seed,
        parameters,
        context,
        feedback,
        base,
        span,
    ):
        import shutil

        from ..core import baselines as bl
        from ..worker import run_worker

        tmp = tempfile.mkdtemp(prefix=f"df_compare_{key(model).lower()}_")
        params = {
            "input": path,
            "architecture": model,
            "time_step": ts,
            "test_count": test_count,
            "validation_fraction": val_fraction,
            "interval_days": cmp.interval,
            "epochs": epochs,
            "device": device,
            "seed": seed,
            "max_seconds": self.parameterAsInt(parameters, "MAX_SECONDS", context),
            "output_model": os.path.join(tmp, "model.dfmodel"),
            "predictions": os.path.join(tmp, "predictions.npz"),
            "test_tiles": 0,  # every block: the networks are scored on the baselines' pixels
            "memory_budget_mb": self.memory_mb,  # core.budget: the worker streams within it
        }

        class _Scaled:
            """Map the worker's 0-100 onto this model's share of the run."""

            def __init__(self, fb):
                self.fb = fb

            def __getattr__(self, name):
                return getattr(self.fb, name)

            def setProgress(self, v):  # noqa: N802
                self.fb.setProgress(base + span * float(v) / 100.0)

        t0 = time.perf_counter()
        try:
            res = run_worker("train", params, _Scaled(feedback))
            # copied frame by frame into a stack of the comparison's work folder
            run = cmp.add_network(model, res.get("predictions", params["predictions"]))
        except ValueError as e:
            raise QgsProcessingException(str(e)) from e
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if run.notes == bl.NO_FINITE_PREDICTION:
            return run
        run.notes = (
            f"trained in the TensorFlow worker: {res.get('epochs_run', '?')} epochs (EPOCHS={epochs}), "
            f"worker wall time {time.perf_counter() - t0:.0f} s"
        )
        run.extra["epochs"] = float(res.get("epochs_run") or 0)
        return run
