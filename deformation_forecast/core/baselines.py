"""Baseline forecasters for the model comparison (Table III): persistence, per-pixel linear trend,
per-pixel SVR and MLP (scikit-learn). No TensorFlow: these run inside the QGIS process.

Every model predicts one frame from the frames before it. Two protocols over the test set of
:mod:`core.split`:

- **one-step-ahead** (the paper's Table III): the target frame ``t`` is predicted from the *observed*
  frames before ``t``;
- **iterative** (the forecasting case, paper Fig. 8): starting from the observed frames before the
  first test frame, each prediction is appended to the history and used as input for the next.

Models:

- ``persistence``: the last frame (zero change). Published InSAR work finds it hard to beat on
  noisy points.
- ``linear-trend``: per pixel, a least-squares line through the last ``trend_window`` frames on real
  time (days), evaluated at the target date. Exact on a linearly moving scene.
- ``svr`` / ``mlp``: per pixel, "multistep to one step" as in the paper's comparison: the features are
  the pixel's ``time_step`` lagged values, the target its next value. They are expressed as rates in
  mm/day (the ``time_step - 1`` lag-to-lag velocities, and the velocity from the last lag to the
  target), so the regressors see the same thing at any depth of the bowl, handle irregular dates and
  can extrapolate subsidence deeper than anything seen in training (a regressor on raw cumulative
  values cannot). Features and target are standardized on the training samples. One model is fitted
  for all pixels from the training targets of the split. The SVR (RBF kernel, O(n^2) in memory and
  time) is fitted on a random subsample of ``svr_samples`` (pixel, date) samples and predicts every
  pixel; the MLP on at most ``mlp_samples``, with early stopping on the validation targets.

Gaps (NaN samples of partly valid pixels) are filled linearly in time before the windows are cut, as
for the networks; pixels without any valid sample stay NaN. Metrics compare against the original
observations, so a filled target never counts.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .dates import to_ordinal
from .errors import Cancelled, InputError  # Cancelled re-exported: the one cancellation signal
from .split import Split
from .streaming import BottomK, hash_keys

BASELINES = ("persistence", "linear-trend", "trend-annual", "svr", "mlp")
LABELS = {
    "persistence": "Persistence",
    "linear-trend": "Linear trend",
    "trend-annual": "Trend + annual",
    "svr": "SVR",
    "mlp": "MLP",
    "cnn-lstm": "CNN-LSTM",
    "cnn-phlstm": "CNN-PhLSTM",
}

Progress = Callable[[float, str], None]
ShouldStop = Callable[[], bool]


@dataclass
class Forecasts:
    """Test-set predictions of one model (``(n_test, rows, cols)`` float32, NaN where undefined)."""

    model: str
    one_step: np.ndarray
    iterative: np.ndarray
    train_seconds: float = 0.0
    predict_seconds: float = 0.0
    device: str = "CPU"
    notes: str = ""
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class BaselineOptions:
    trend_window: int = 0  # 0 = chosen on the validation dates (LinearTrend)
    svr_samples: int = 1000
    mlp_samples: int = 200_000
    mlp_hidden: tuple[int, ...] = (64, 32)
    mlp_max_epochs: int = 200
    mlp_patience: int = 10
    seed: int = 42


def _check(should_stop: ShouldStop | None) -> None:
    if should_stop is not None and should_stop():
        raise Cancelled()


class Baseline:
    """Interface: ``fit`` on the training targets, then ``predict`` one frame from a history."""

    name = ""
    notes = ""

    def history_needed(self) -> int:
        return 1

    def fit(
        self,
        frames: np.ndarray,
        times: np.ndarray,
        split: Split,
        progress: Progress | None = None,
        should_stop: ShouldStop | None = None,
    ) -> None:
        return None

    def predict(self, history: np.ndarray, hist_times: np.ndarray, target_time: float) -> np.ndarray:
        raise NotImplementedError


class Persistence(Baseline):
    name = "persistence"
    notes = "last frame held"

    def predict(self, history, hist_times, target_time):
        return history[-1].astype("float32", copy=True)


# the trend windows tried on the validation dates, and the horizons they are scored at: the one
# choice of the trend window, used by the linear-trend baseline here and by the default networks'
# own trend (ml/trend.py, ml/train.py)
TREND_CANDIDATES = (1, 5, 10, 20, 40)
TREND_HORIZON = 20


def trend_window_errors(
    frames: np.ndarray,
    times: np.ndarray,
    first_origin: int,
    end: int,
    candidates: tuple[int, ...] = TREND_CANDIDATES,
    horizon: int = TREND_HORIZON,
) -> dict[int, tuple[float, int]]:
    """Per candidate window w (at most `first_origin` dates): (sum of |error|, count) of the
    least-squares line over the w frames before every origin in [first_origin, end), 1..horizon
    steps ahead (never reaching `end`, the first test date), over the finite errors of `frames`
    (T, ...) at `times` (real time, the dates from index 0). Sums over pixel subsets add up
    (:func:`add_errors`); :func:`choose_trend_window` picks the window."""
    out: dict[int, tuple[float, int]] = {}
    lo = max(0, first_origin - max(candidates))  # only the dates any candidate needs, as float64
    flat = np.asarray(frames[lo:end], dtype="float64").reshape(end - lo, -1)
    for w in candidates:
        if w > first_origin:
            continue
        err, cnt = 0.0, 0
        for o in range(first_origin, end):
            h = min(horizon, end - o)
            pred = _line_predict(flat[o - w - lo : o - lo], times[o - w : o], times[o : o + h])
            e = np.abs(pred - flat[o - lo : o - lo + h])
            ok = np.isfinite(e)
            err += float(e[ok].sum())
            cnt += int(ok.sum())
        out[w] = (err, cnt)
    return out


def choose_trend_window(errors: dict[int, tuple[float, int]], default: int) -> tuple[int, dict[int, float]]:
    """(the window of least mean absolute error, ties the shorter; {window: MAE}) of
    :func:`trend_window_errors`' sums; `default` when no window could be scored."""
    maes = {w: e / c for w, (e, c) in sorted(errors.items()) if c}
    if not maes:
        return int(default), {}
    return int(min(maes, key=lambda w: (maes[w], w))), maes


def line_errors(
    frames: np.ndarray, times: np.ndarray, split: Split, candidates: tuple[int, ...] = TREND_CANDIDATES
) -> dict[int, tuple[float, int]]:
    """:func:`trend_window_errors` from the first validation target (else TREND_HORIZON dates
    before the test set) to the first test date, over the pixels of `frames`."""
    end = split.first_test
    first = int(split.val[0]) if len(split.val) else max(1, end - TREND_HORIZON)
    return trend_window_errors(frames, times, first, end, candidates)


def _line_predict(y: np.ndarray, t: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(len(targets), n) values of the per-column least-squares line through (t, y (w, n))."""
    t = np.asarray(t, dtype="float64")
    ym = y.mean(axis=0)
    if len(t) == 1:
        return np.broadcast_to(ym, (len(targets),) + ym.shape)
    tc = t - t.mean()
    slope = np.tensordot(tc, y - ym, axes=(0, 0)) / float((tc**2).sum())
    return ym[None] + slope[None] * (np.asarray(targets, dtype="float64") - t.mean())[:, None]


def add_errors(total: dict[int, tuple[float, int]], part: dict[int, tuple[float, int]]) -> None:
    for w, (e, c) in part.items():
        e0, c0 = total.get(w, (0.0, 0))
        total[w] = (e0 + e, c0 + c)


class LinearTrend(Baseline):
    """Per pixel, a least-squares line through the last `window` frames (real time). `window` = 0:
    chosen on the validation dates among TREND_CANDIDATES (:meth:`choose`), as the networks' trend."""

    name = "linear-trend"

    def __init__(self, window: int = 0):
        if window < 0:
            raise InputError(f"TREND_WINDOW must be at least 1 frame (or 0 = chosen), not {window}.")
        self.auto = window == 0
        self.window = window or max(TREND_CANDIDATES)
        self.errors: dict[int, tuple[float, int]] = {}
        self.notes = f"least squares over the last {window} frames, real time"

    def history_needed(self) -> int:
        return self.window

    def gather(self, frames: np.ndarray, times: np.ndarray, split: Split) -> None:
        """Add a window of the raster's validation errors (only when the window is chosen)."""
        if self.auto:
            add_errors(self.errors, line_errors(frames, times, split))

    def choose(self) -> None:
        """Take the window with the least validation MAE (ties: the shorter)."""
        if not self.auto:
            return
        self.window, maes = choose_trend_window(self.errors, self.window)
        listed = ", ".join(f"{w}: {maes[w]:.3g}" for w in sorted(maes))
        self.notes = (
            f"least squares over the last {self.window} frames, real time; window chosen on the "
            f"validation dates 1..{TREND_HORIZON} steps ahead (MAE per window {listed})"
        )

    def fit(self, frames, times, split, progress=None, should_stop=None):
        self.gather(frames, times, split)
        self.choose()

    def predict(self, history, hist_times, target_time):
        y = np.asarray(history[-self.window :], dtype="float64")
        t = np.asarray(hist_times[-self.window :], dtype="float64")
        if len(t) == 1:
            return y[0].astype("float32")
        tc = t - t.mean()
        ym = y.mean(axis=0)
        slope = np.tensordot(tc, y - ym, axes=(0, 0)) / float((tc**2).sum())
        return (ym + slope * (target_time - t.mean())).astype("float32")


class TrendAnnual(Baseline):
    """Per pixel, least squares of a line plus an annual sinusoid (a + b t + c sin + d cos of
    2 pi t / 365.25 days) over the frames of the last SPAN_DAYS (at least MIN_FRAMES)."""

    name = "trend-annual"
    SPAN_DAYS = 2 * 365.25
    MIN_FRAMES = 8

    def __init__(self):
        self.window = self.MIN_FRAMES
        self.notes = "line + annual sinusoid, least squares over the last two years"

    def history_needed(self) -> int:
        return self.window

    def fit(self, frames, times, split, progress=None, should_stop=None):
        t = np.asarray(times[: split.first_test], dtype="float64")
        span = int(np.sum(t > t[-1] - self.SPAN_DAYS)) if len(t) else 0
        self.window = max(self.MIN_FRAMES, span)
        self.notes = f"line + annual sinusoid, least squares over the last {self.window} frames"

    def predict(self, history, hist_times, target_time):
        y = np.asarray(history[-self.window :], dtype="float64")
        t = np.asarray(hist_times[-self.window :], dtype="float64")
        if len(t) < 4:  # too short for four terms: the line
            return LinearTrend(len(t)).predict(history, hist_times, target_time)
        t0 = t[-1]

        def design(tt):
            tt = np.atleast_1d(tt) - t0
            w = 2 * np.pi * (tt + t0) / 365.25
            return np.stack([np.ones_like(tt), tt / 365.25, np.sin(w), np.cos(w)], axis=1)

        a = design(t)
        flat = y.reshape(len(t), -1)
        coef, *_ = np.linalg.lstsq(a, flat, rcond=None)
        out = (design(target_time) @ coef)[0]
        return out.reshape(y.shape[1:]).astype("float32")


def _rate_features(lags: np.ndarray, lag_times: np.ndarray) -> np.ndarray:
    """(n, time_step) lags at `lag_times` -> (n, max(time_step - 1, 1)) velocities in mm/day."""
    if lags.shape[1] < 2:
        return np.zeros((lags.shape[0], 1))
    dt_days = np.diff(lag_times, axis=-1)
    return np.diff(lags, axis=1) / dt_days


class LaggedRegressor(Baseline):
    """Per-pixel regressor on lagged values (see the module docstring); subclasses make the model."""

    def __init__(self, time_step: int, max_samples: int, seed: int):
        self.time_step = time_step
        self.max_samples = max_samples
        self.seed = seed
        self.model: Any = None  # the scikit-learn estimator, once fitted
        self.x_mean: Any = None
        self.x_std: Any = None
        self.y_mean = 0.0
        self.y_std = 1.0
        self.fit_samples = 0

    def history_needed(self) -> int:
        return self.time_step

    VAL_SAMPLES = 50_000  # at most this many validation samples (early stopping of the MLP)

    def samplers(self) -> tuple[BottomK, BottomK]:
        """Empty training and validation samples: at most `max_samples` (pixel, target) pairs,
        chosen by a key hashed from (pixel, target, seed) (core.streaming), so that the same pairs
        are chosen whether the stack is given whole or window by window."""
        return BottomK(self.max_samples), BottomK(min(self.max_samples, self.VAL_SAMPLES))

    def gather(
        self,
        frames: np.ndarray,
        pixel_ids: np.ndarray,
        times: np.ndarray,
        split: Split,
        train: BottomK,
        val: BottomK,
    ) -> None:
        """Offer the (pixel, target) samples of gap-filled `frames` (T, ...) whose pixels have the
        global indexes `pixel_ids` to the `train` and `val` samples (features: rates between the
        ``time_step`` lags; target: the rate from the last lag to the target)."""
        ts = self.time_step
        n_frames = frames.shape[0]
        flat = frames.reshape(n_frames, -1)
        pix = np.flatnonzero(np.isfinite(flat).all(axis=0))
        if pix.size == 0:
            return
        gid = np.asarray(pixel_ids, dtype=np.int64).ravel()[pix]
        for bk, targets, tag in ((train, split.train, 1), (val, split.val, 2)):
            for t in np.asarray(targets, dtype=np.int64).tolist():
                keys = hash_keys(gid * n_frames + t, self.seed * 4 + tag)
                m = keys < bk.threshold()
                if not m.any():
                    continue
                sel = pix[m]
                lags = flat[t - ts : t, sel].T.astype("float64")
                lag_t = np.broadcast_to(times[t - ts : t], lags.shape)
                x = _rate_features(lags, lag_t)
                y = (flat[t, sel].astype("float64") - lags[:, -1]) / (times[t] - times[t - 1])
                bk.add(keys[m], x=x, y=y)

    def _scale_x(self, x: np.ndarray) -> np.ndarray:
        return (x - self.x_mean) / self.x_std

    def fit(self, frames, times, split, progress=None, should_stop=None):
        train, val = self.samplers()
        h_w = int(np.prod(frames.shape[1:]))
        self.gather(frames, np.arange(h_w), times, split, train, val)
        self.fit_from(train, val, split, progress, should_stop)

    def fit_from(self, train: BottomK, val: BottomK, split: Split, progress=None, should_stop=None):
        """Fit on the gathered samples (see :meth:`gather`)."""
        if train.size == 0:
            raise InputError("No pixel is valid over the whole stack; nothing to fit the baselines on.")
        tr = train.result()
        x, y = tr["x"], tr["y"]
        self.fit_samples = len(y)
        self.x_mean = x.mean(axis=0)
        self.x_std = np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)
        self.y_mean = float(y.mean())
        self.y_std = float(y.std()) or 1.0
        xv = yv = None
        if len(split.val) and val.size:
            va = val.result()
            xv, yv = va["x"], va["y"]
        self._fit(self._scale_x(x), (y - self.y_mean) / self.y_std, xv, yv, progress, should_stop)

    def _fit(self, x, y, xv, yv, progress, should_stop) -> None:
        raise NotImplementedError

    def _predict_scaled(self, x: np.ndarray, chunk: int = 8192) -> np.ndarray:
        """The model's prediction, `chunk` samples at a time (bounded activations)."""
        out = np.empty(len(x))
        for i in range(0, len(x), chunk):
            out[i : i + chunk] = self.model.predict(x[i : i + chunk])
        return out

    def predict(self, history, hist_times, target_time):
        ts = self.time_step
        h = np.asarray(history[-ts:], dtype="float64")
        t = np.asarray(hist_times[-ts:], dtype="float64")
        flat = h.reshape(ts, -1)
        ok = np.isfinite(flat).all(axis=0)
        out = np.full(flat.shape[1], np.nan)
        if ok.any():
            lags = flat[:, ok].T
            x = _rate_features(lags, np.broadcast_to(t, lags.shape))
            rate = self._predict_scaled(self._scale_x(x)) * self.y_std + self.y_mean
            out[ok] = lags[:, -1] + rate * (target_time - t[-1])
        return out.reshape(h.shape[1:]).astype("float32")


class SVRBaseline(LaggedRegressor):
    name = "svr"

    def __init__(self, time_step: int, max_samples: int = 1000, seed: int = 42):
        super().__init__(time_step, max_samples, seed)

    def _fit(self, x, y, xv, yv, progress, should_stop):
        from sklearn.svm import SVR

        _check(should_stop)
        if progress:
            progress(0.0, f"SVR: fitting on {len(y)} (pixel, date) samples")
        self.model = SVR(kernel="rbf", C=1.0, epsilon=0.05, gamma="scale", cache_size=500)
        self.model.fit(x, y)
        self.notes = (
            f"RBF SVR on {self.time_step} lags ({len(self.model.support_)} support vectors), fitted on a random subsample of {len(y)} "
            f"(pixel, date) samples, predicting every pixel"
        )

    def _predict_scaled(self, x: np.ndarray, chunk: int | None = None) -> np.ndarray:
        """The SVR's decision function as matrix products (the same numbers as ``SVR.predict``,
        a few times faster than libsvm's per-sample loop on many pixels), `chunk` samples at a
        time (default: two (chunk, support vectors) float64 matrices within the memory budget)."""
        sv = self.model.support_vectors_
        if chunk is None:
            from .budget import working_bytes

            chunk = int(min(8192, max(64, working_bytes(16) // (8 * max(len(sv), 1)))))
        coef = self.model.dual_coef_[0]
        gamma = float(self.model._gamma)
        sv2 = (sv**2).sum(axis=1)
        out = np.empty(len(x))
        for i in range(0, len(x), chunk):
            xc = x[i : i + chunk]
            d = (xc**2).sum(axis=1)[:, None] + sv2[None, :] - 2.0 * xc @ sv.T
            np.maximum(d, 0.0, out=d)
            d *= -gamma
            np.exp(d, out=d)
            out[i : i + chunk] = d @ coef
        return out + float(self.model.intercept_[0])


class MLPBaseline(LaggedRegressor):
    name = "mlp"

    def __init__(
        self,
        time_step: int,
        max_samples: int = 200_000,
        hidden: tuple[int, ...] = (64, 32),
        max_epochs: int = 200,
        patience: int = 10,
        seed: int = 42,
    ):
        super().__init__(time_step, max_samples, seed)
        self.hidden = tuple(hidden)
        self.max_epochs = max_epochs
        self.patience = patience
        self.epochs_run = 0

    def _fit(self, x, y, xv, yv, progress, should_stop):
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPRegressor

        self.model = MLPRegressor(
            hidden_layer_sizes=self.hidden,
            learning_rate_init=1e-3,
            batch_size=min(256, len(y)),
            random_state=self.seed,
            max_iter=1,
            shuffle=True,
        )
        if xv is not None:
            xv = self._scale_x(xv)
            yv = (yv - self.y_mean) / self.y_std
        best, best_model, bad = math.inf, None, 0
        for epoch in range(self.max_epochs):
            _check(should_stop)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                self.model.partial_fit(x, y)
            loss = float(np.mean((self.model.predict(xv) - yv) ** 2)) if xv is not None else self.model.loss_
            self.epochs_run = epoch + 1
            if progress:
                progress((epoch + 1) / self.max_epochs, f"MLP epoch {epoch + 1}: validation MSE {loss:.4g}")
            if loss < best - 1e-6:
                best, best_model, bad = loss, copy.deepcopy(self.model), 0
            else:
                bad += 1
                if bad >= self.patience:
                    break
        if best_model is not None:
            self.model = best_model
        self.notes = (
            f"MLP {self.hidden} on {self.time_step} lags, fitted on {len(y)} (pixel, date) samples, "
            f"{self.epochs_run} epochs (early stopping on validation)"
        )


def make_baseline(name: str, time_step: int, options: BaselineOptions | None = None) -> Baseline:
    o = options or BaselineOptions()
    if name == "persistence":
        return Persistence()
    if name == "linear-trend":
        return LinearTrend(o.trend_window)
    if name == "trend-annual":
        return TrendAnnual()
    if name == "svr":
        return SVRBaseline(time_step, o.svr_samples, o.seed)
    if name == "mlp":
        return MLPBaseline(time_step, o.mlp_samples, o.mlp_hidden, o.mlp_max_epochs, o.mlp_patience, o.seed)
    raise InputError(f"Unknown baseline model {name!r}; known: {', '.join(BASELINES)}.")


def times_of(dates: Sequence[dt.date]) -> np.ndarray:
    """Days since the first date (float64), the time axis of trends and rates."""
    t = to_ordinal(dates)
    return t - t[0]


def predict_test(
    model: Baseline,
    frames: np.ndarray,
    times: np.ndarray,
    split: Split,
    report: Progress | None = None,
    should_stop: ShouldStop | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One-step and iterative predictions ``(n_test, ...)`` float32 of a fitted `model` for the
    gap-filled `frames` (T, ...): the whole stack or a window of it (every baseline is per pixel)."""
    need = model.history_needed()
    n = len(split.test)
    one = np.empty((n,) + frames.shape[1:], dtype="float32")
    it = np.empty_like(one)
    for k, t in enumerate(split.test):
        _check(should_stop)
        lo = max(0, t - need)
        one[k] = model.predict(frames[lo:t], times[lo:t], times[t])
        if report:
            report((k + 1) / (2 * n), f"{model.name}: one-step {k + 1}/{n}")
    hist = list(frames[max(0, split.first_test - need) : split.first_test])
    hist_t = list(times[max(0, split.first_test - need) : split.first_test])
    for k, t in enumerate(split.test):
        _check(should_stop)
        p = model.predict(np.stack(hist[-need:]), np.array(hist_t[-need:]), times[t])
        it[k] = p
        hist.append(p)
        hist_t.append(times[t])
        if report:
            report(0.5 + (k + 1) / (2 * n), f"{model.name}: iterative {k + 1}/{n}")
    return one, it


def prepare_frames(data: np.ndarray, dates: Sequence[dt.date]) -> np.ndarray:
    """Gap-filled float32 copy of a (T, rows, cols) stack: NaN samples of partly valid pixels filled
    linearly in time (the end value held before the first / after the last valid sample)."""
    from .resample import fill_gaps

    return fill_gaps(np.asarray(data, dtype="float32"), dates)


def load_network_predictions(path: str, model: str, test_dates: Sequence[dt.date]) -> Forecasts:
    """The npz the worker's ``train`` command writes with ``predictions`` (one_step, iterative,
    targets, test_dates, train_seconds, predict_seconds, device) as Forecasts for `model`.

    Raises ValueError when its test dates are not `test_dates` (the split must be the same)."""
    with np.load(path, allow_pickle=False) as z:
        got = [str(d) for d in z["test_dates"].tolist()]
        want = [d.isoformat() for d in test_dates]
        if got != want:
            raise ValueError(
                f"{model}: the worker's test dates {got[:2]}..{got[-1:]} ({len(got)}) differ from the "
                f"baselines' {want[:2]}..{want[-1:]} ({len(want)}); the split is not the same."
            )
        f = Forecasts(
            model=model,
            one_step=z["one_step"].astype("float32"),
            iterative=z["iterative"].astype("float32"),
            train_seconds=float(z["train_seconds"]),
            predict_seconds=float(z["predict_seconds"]),
            device=str(z["device"]),
        )
    if not np.isfinite(f.one_step).any():
        f.notes = NO_FINITE_PREDICTION
    return f


NO_FINITE_PREDICTION = (
    "WARNING: the worker returned no finite prediction (all NaN): the training probably diverged; "
    "its metrics are n/a."
)
