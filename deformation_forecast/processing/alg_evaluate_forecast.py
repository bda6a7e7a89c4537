"""Evaluate a forecast stack against an observed stack: metrics per date and overall."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..core.errors import InputError
from ..core.stack import atomic_path
from . import result_hooks
from .base import DeformationAlgorithm
from .tables import table_sink, write_table

TABLE_COLUMNS = [
    ("date", "str"),
    ("observed_date", "str"),
    ("MAE", "float"),
    ("MSE", "float"),
    ("RMSE", "float"),
    ("SSIM", "float"),
    ("MS_SSIM", "float"),
    ("PSNR", "float"),
    ("R2", "float"),
    ("N", "int"),
]
METRICS = ("MAE", "MSE", "RMSE", "SSIM", "MS_SSIM", "PSNR", "R2")


class EvaluateForecast(DeformationAlgorithm):
    NAME = "evaluateforecast"
    DISPLAY = "Evaluate forecast against observations"
    GROUP = "validation"
    TAGS = "forecast,validation,mae,mse,rmse,ssim,ms-ssim,psnr,r2,error"
    HELP = (
        "<p>Compares a forecast stack (PREDICTED) with an observed stack (OBSERVED) on the same grid: "
        "each predicted date is paired with the nearest observed date within MAX_DAYS. Works for any "
        "forecast, including ones made outside the plugin.</p>"
        "<p>Outputs the metrics of the paper's Table III (MAE, MSE, RMSE, SSIM, MS-SSIM, PSNR) and R² "
        "per date and overall (as a table and as numbers), the stack of per-pixel absolute errors at "
        "the paired dates, and an HTML report with the predicted-vs-observed scatter (Fig. 19), the "
        "min/max trends (Fig. 18) and error maps.</p>"
        "<p>Pixels NaN in either stack are ignored. SSIM and PSNR use the data range L = max - min of "
        "the observed frames compared (or DATA_RANGE), PSNR = 10 log10(L²/MSE). Overall MAE/MSE/R² pool "
        "every valid pixel; overall SSIM and MS-SSIM are the mean over dates.</p>"
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("PREDICTED", "Predicted stack"))
        self.addParameter(QgsProcessingParameterRasterLayer("OBSERVED", "Observed stack"))
        self.addParameter(
            QgsProcessingParameterNumber(
                "MAX_DAYS",
                "Largest date difference (days)",
                QgsProcessingParameterNumber.Integer,
                6,
                False,
                0,
            )
        )
        dr = QgsProcessingParameterNumber(
            "DATA_RANGE",
            "Data range for SSIM/PSNR (0 = observed range)",
            QgsProcessingParameterNumber.Double,
            0.0,
            False,
            0.0,
        )
        dr.setFlags(dr.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(dr)
        self.addParameter(table_sink("OUTPUT_TABLE", "Metrics per date", optional=False))
        self.addParameter(
            QgsProcessingParameterRasterDestination("OUTPUT_ERRORS", "Absolute errors", optional=True)
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                "OUTPUT_REPORT",
                "Evaluation report",
                "HTML files (*.html)",
                optional=True,
                createByDefault=True,
            )
        )
        for k in METRICS:
            self.addOutput(QgsProcessingOutputNumber(k, f"Overall {k}"))
        self.addOutput(QgsProcessingOutputNumber("MATCHED_DATES", "Dates compared"))
        self.addOutput(QgsProcessingOutputNumber("DATA_RANGE_USED", "Data range used"))

    def compute(self, parameters, context, feedback):
        import math

        from ..core import evaluation as ev
        from ..core.stack import same_grid

        pred_info = self.stack_info(parameters, "PREDICTED", context)
        obs_info = self.stack_info(parameters, "OBSERVED", context, observed=True)
        max_days = self.parameterAsInt(parameters, "MAX_DAYS", context)
        data_range = self.parameterAsDouble(parameters, "DATA_RANGE", context) or None
        if not same_grid(pred_info, obs_info):
            raise InputError(
                f"PREDICTED ({pred_info.width} x {pred_info.height}, {pred_info.crs}) and OBSERVED "
                f"({obs_info.width} x {obs_info.height}, {obs_info.crs}) are not on the same grid; align "
                "them first (Raster > Align Rasters, or Warp with the other as the target extent and size)."
            )
        pairs = ev.match_dates(pred_info.dates, obs_info.dates, max_days)
        if not pairs:
            raise InputError(
                f"No predicted date ({pred_info.dates[0]}..{pred_info.dates[-1]}) has an observed date "
                f"({obs_info.dates[0]}..{obs_info.dates[-1]}) within MAX_DAYS={max_days} days."
            )
        unmatched = len(pred_info.dates) - len(pairs)
        if unmatched:
            feedback.pushInfo(
                f"{unmatched} predicted dates have no observation within {max_days} days; skipped."
            )
        out_err = self.parameterAsOutputLayer(parameters, "OUTPUT_ERRORS", context)
        report_path = self.parameterAsFileOutput(parameters, "OUTPUT_REPORT", context)
        self.check_output_not_input(out_err, pred_info.path, obs_info.path)
        self.check_output_not_input(report_path, pred_info.path, obs_info.path)
        feedback.pushInfo(f"Comparing {len(pairs)} dates, one frame pair at a time")

        def progress(f):
            self.check_canceled(feedback)
            feedback.setProgress(80 * f)

        res = ev.evaluate_files(
            pred_info.path,
            obs_info.path,
            pairs,
            data_range,
            errors_path=out_err or None,
            errors_meta={
                "crs": pred_info.crs,
                "transform": pred_info.transform,
                "units": obs_info.units,
                "tags": {"CONTENT": "absolute error |predicted - observed|"},
            },
            progress=progress,
            mb=self.memory_mb,
        )
        rows, total, L = res.rows, res.total, res.data_range
        for r in rows:
            feedback.pushInfo(f"{r['date']} (observed {r['observed_date']}): {ev.mt.format_metrics(r)}")
        feedback.pushInfo(f"overall: {ev.mt.format_metrics(total)} (data range {L:.4g})")
        dest = write_table(self, parameters, "OUTPUT_TABLE", context, TABLE_COLUMNS, [*rows, total])
        results = {"OUTPUT_TABLE": dest, "MATCHED_DATES": len(pairs), "DATA_RANGE_USED": L}
        # the desktop's comparison dock (if loaded) shows the table once QGIS has loaded it
        result_hooks.attach(context, self.NAME, dest, feedback)
        for k in METRICS:
            v = float(total[k])
            results[k] = v if math.isfinite(v) else None
        if out_err:
            results["OUTPUT_ERRORS"] = out_err
        feedback.setProgress(85)
        if report_path:
            notes = [f"PREDICTED: {pred_info.path}", f"OBSERVED: {obs_info.path}"]
            if unmatched:
                notes.append(f"{unmatched} predicted dates without an observation within {max_days} days.")
            dates = [pred_info.dates[i] for i, _ in pairs]
            with atomic_path(report_path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
                fh.write(ev.evaluation_report_html(rows, total, res.figures, dates, L, notes))
            results["OUTPUT_REPORT"] = report_path
        feedback.setProgress(100)
        return results
