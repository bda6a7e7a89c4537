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
from ..core.metrics import METRICS
from ..core.stack import atomic_path
from . import result_hooks
from .base import DeformationAlgorithm
from .tables import table_sink, write_table

TABLE_COLUMNS = [("date", "str"), ("observed_date", "str"), *((m, "float") for m in METRICS), ("N", "int")]


class EvaluateForecast(DeformationAlgorithm):
    NAME = "evaluateforecast"
    DISPLAY = "Evaluate forecast against observations"
    GROUP = "validation"
    TAGS = "forecast,validation,mae,mse,rmse,ssim,ms-ssim,psnr,r2,error"
    HELP = (
        "<p>Compares a forecast with what was observed later: how far the <b>Predicted stack</b> is "
        "from the <b>Observed stack</b> on the same grid, per date and overall. Works for any "
        "forecast, including ones made outside the plugin.</p><p>Each predicted date is paired with "
        "the nearest observed date within <b>Largest date difference</b> (days; about the revisit "
        "interval). Pixels NaN in either stack are left out.</p><p>Outputs: the metrics of the paper's "
        "Table III (MAE, MSE, RMSE in mm; SSIM and MS-SSIM; PSNR in dB) and R², per date and overall, "
        "in the <b>Metrics per date</b> table and as numbers; the <b>Absolute errors</b> stack (mm, "
        "one band per paired date); and the <b>Evaluation report</b> (HTML) with the "
        "predicted-vs-observed scatter (the paper's Fig. 19), the minimum and maximum per date (Fig. "
        "18) and error maps. In the desktop the model comparison dock charts the table.</p><p>SSIM and "
        "PSNR need the range L of the values: by default max - min of the observed dates compared; set "
        "<b>Data range for SSIM/PSNR</b> (mm) to compare several runs on one scale. PSNR = 10 "
        "log10(L²/MSE). The overall MAE, MSE and R² pool every valid pixel; the overall SSIM and "
        "MS-SSIM are the mean over dates.</p><p><b>Lower bound</b> and <b>Upper bound of the "
        "prediction interval</b> (optional, both or neither): the bound stacks 'Forecast deformation' "
        "writes. Then the coverage is the fraction of observed pixel-dates inside the interval (a 90 % "
        "interval should cover about 0.9) and the mean width the mean of upper - lower (mm), pooled "
        "over the paired dates; both are also logged per date.</p>"
    )
    HELP_ANCHOR = "evaluate-forecast-against-observations-evaluateforecast"
    PREDICTED = "PREDICTED"
    OBSERVED = "OBSERVED"
    LOWER = "LOWER"
    UPPER = "UPPER"
    MAX_DAYS = "MAX_DAYS"
    DATA_RANGE = "DATA_RANGE"
    OUTPUT_TABLE = "OUTPUT_TABLE"
    OUTPUT_ERRORS = "OUTPUT_ERRORS"
    OUTPUT_REPORT = "OUTPUT_REPORT"
    MATCHED_DATES = "MATCHED_DATES"
    DATA_RANGE_USED = "DATA_RANGE_USED"
    COVERAGE = "COVERAGE"
    MEAN_WIDTH = "MEAN_WIDTH"
    # the overall metrics are number outputs named as core.metrics.METRICS

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.PREDICTED, "Predicted stack"))
        self.addParameter(QgsProcessingParameterRasterLayer(self.OBSERVED, "Observed stack"))
        for name, label in ((self.LOWER, "Lower"), (self.UPPER, "Upper")):
            self.addParameter(
                QgsProcessingParameterRasterLayer(
                    name, f"{label} bound of the prediction interval (optional)", optional=True
                )
            )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.MAX_DAYS,
                "Largest date difference (days)",
                QgsProcessingParameterNumber.Integer,
                6,
                False,
                0,
            )
        )
        dr = QgsProcessingParameterNumber(
            self.DATA_RANGE,
            "Data range for SSIM/PSNR (0 = observed range)",
            QgsProcessingParameterNumber.Double,
            0.0,
            False,
            0.0,
        )
        dr.setFlags(dr.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(dr)
        self.addParameter(table_sink(self.OUTPUT_TABLE, "Metrics per date", optional=False))
        self.addParameter(
            QgsProcessingParameterRasterDestination(self.OUTPUT_ERRORS, "Absolute errors", optional=True)
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                self.OUTPUT_REPORT,
                "Evaluation report",
                "HTML files (*.html)",
                optional=True,
                createByDefault=True,
            )
        )
        for k in METRICS:
            self.addOutput(QgsProcessingOutputNumber(k, f"Overall {k}"))
        self.addOutput(QgsProcessingOutputNumber(self.MATCHED_DATES, "Dates compared"))
        self.addOutput(QgsProcessingOutputNumber(self.DATA_RANGE_USED, "Data range used"))
        self.addOutput(QgsProcessingOutputNumber(self.COVERAGE, "Coverage of the prediction interval"))
        self.addOutput(QgsProcessingOutputNumber(self.MEAN_WIDTH, "Mean width of the prediction interval"))
        self.addOutput(
            QgsProcessingOutputNumber(self.MASKED_VALUES, "Values read as nodata (sentinels, masks, spikes)")
        )

    def compute(self, parameters, context, feedback):
        import math

        from ..core import evaluation as ev
        from ..core.stack import same_grid

        pred_info = self.stack_info(parameters, self.PREDICTED, context)
        obs_info = self.stack_info(parameters, self.OBSERVED, context, observed=True)
        max_days = self.parameterAsInt(parameters, self.MAX_DAYS, context)
        data_range = self.parameterAsDouble(parameters, self.DATA_RANGE, context) or None
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
        band = self.band_infos(parameters, context, pred_info)
        unmatched = len(pred_info.dates) - len(pairs)
        if unmatched:
            feedback.pushInfo(
                f"{unmatched} predicted dates have no observation within {max_days} days; skipped."
            )
        out_err = self.parameterAsOutputLayer(parameters, self.OUTPUT_ERRORS, context)
        report_path = self.parameterAsFileOutput(parameters, self.OUTPUT_REPORT, context)
        self.check_output_not_input(out_err, pred_info.path, obs_info.path)
        self.check_output_not_input(report_path, pred_info.path, obs_info.path)
        feedback.pushInfo(f"Comparing {len(pairs)} dates, one frame pair at a time")

        run = self.run_context(feedback)
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
            run=run.stage(0, 0.8),
        )
        rows, total, L = res.rows, res.total, res.data_range
        for r in rows:
            feedback.pushInfo(f"{r['date']} (observed {r['observed_date']}): {ev.mt.format_metrics(r)}")
        feedback.pushInfo(f"overall: {ev.mt.format_metrics(total)} (data range {L:.4g})")
        dest = write_table(self, parameters, self.OUTPUT_TABLE, context, TABLE_COLUMNS, [*rows, total])
        results = {self.OUTPUT_TABLE: dest, self.MATCHED_DATES: len(pairs), self.DATA_RANGE_USED: L}
        # the desktop's comparison dock (if loaded) shows the table once QGIS has loaded it
        result_hooks.attach(context, self.NAME, dest, feedback)
        for k in METRICS:
            v = float(total[k])
            results[k] = v if math.isfinite(v) else None
        if out_err:
            results[self.OUTPUT_ERRORS] = out_err
        if band:
            results.update(
                self.band_coverage(band, obs_info.path, pairs, pred_info.dates, run.stage(0.8, 0.85))
            )
        feedback.setProgress(85)
        if report_path:
            notes = [f"PREDICTED: {pred_info.path}", f"OBSERVED: {obs_info.path}"]
            if unmatched:
                notes.append(f"{unmatched} predicted dates without an observation within {max_days} days.")
            dates = [pred_info.dates[i] for i, _ in pairs]
            with atomic_path(report_path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
                fh.write(ev.evaluation_report_html(rows, total, res.figures, dates, L, notes))
            results[self.OUTPUT_REPORT] = report_path
        feedback.setProgress(100)
        return results

    def band_infos(self, parameters, context, pred_info):
        """(lower, upper) StackInfos, None when neither is given; refuses one alone or a misfit."""
        from ..core.stack import same_grid

        given = {k: parameters.get(k) for k in (self.LOWER, self.UPPER)}
        if not any(given.values()):
            return None
        if not all(given.values()):
            missing = self.UPPER if given[self.LOWER] else self.LOWER
            raise InputError(f"{missing}: give both LOWER and UPPER (the interval's bounds), or neither.")
        infos = tuple(self.stack_info(parameters, k, context) for k in (self.LOWER, self.UPPER))
        for k, info in zip((self.LOWER, self.UPPER), infos, strict=True):
            if not same_grid(info, pred_info) or list(info.dates) != list(pred_info.dates):
                raise InputError(
                    f"{k} is not on PREDICTED's grid and dates; give the bounds written with that forecast "
                    "(OUTPUT_LOWER/OUTPUT_UPPER of 'Forecast deformation')."
                )
        return infos

    def band_coverage(self, band, obs_path, pairs, dates, run) -> dict:
        """COVERAGE and MEAN_WIDTH of the band (core.intervals), logged per date."""
        import math

        from ..core.intervals import band_coverage_files

        rows, (cov, width, n) = band_coverage_files(band[0].path, band[1].path, obs_path, pairs, run)
        for (i, _), (c, w, m) in zip(pairs, rows, strict=True):
            run.message(f"{dates[i]}: interval coverage {c:.3f}, mean width {w:.4g} ({m} pixels)")
        run.message(f"overall: interval coverage {cov:.3f}, mean width {width:.4g} over {n} pixel-dates")
        return {
            self.COVERAGE: cov if math.isfinite(cov) else None,
            self.MEAN_WIDTH: width if math.isfinite(width) else None,
        }
