"""`failuretime` figures (issue 18): the false-alarm table on synthetic fields, the known-answer
errors on Voight creep, and the retrospective on the real Maoxian landslide (SBAS points, StaMPS
export; the slope failed on 2017-06-24, five days after the last acquisition).

    .venv/bin/python bench/bench_failuretime.py [--small]

--small: 60 x 60 fields and fewer repetitions (a smoke test).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402,F401  (puts the package on sys.path)

from deformation_forecast.core import failure as fl  # noqa: E402
from deformation_forecast.core import failure_synthetic as syn  # noqa: E402

START = dt.date(2019, 1, 1)
MAOXIAN = os.path.join(_common.ROOT, "..", "shared", "data", "maoxian_stamps", "Maoxian_SBAS.csv")
MAOXIAN_FAILURE = dt.date(2017, 6, 24)


def false_alarms(size: int) -> None:
    print(f"\n## False alarms: {size} x {size} fields, default parameters (CONFIDENCE 0.99)")
    print("noise: white 2 mm + AR(1) 2 mm (lag-1 correlation 0.7) + atmospheric screen 2 mm per date")
    print("| series | kind | alert >= 1 | alert >= 2 | calibration factor | seconds |")
    print("|---|---|---|---|---|---|")
    for label, count, step in (("2 yr of 12-day", 62, 12), ("2 yr of 6-day", 122, 6)):
        dates = syn.regular_dates(START, count, step)
        for kind in syn.KINDS:
            rng = np.random.default_rng(hash(kind) % 2**32)
            vals = syn.field(kind, dates, size, rng).reshape(len(dates), -1).T
            t0 = time.perf_counter()
            res = fl.analyse(vals, dates)
            sec = time.perf_counter() - t0
            print(
                f"| {label} | {kind} | {(res.alert >= 1).mean():.2%} | {(res.alert >= 2).mean():.3%} "
                f"| {res.kappa:.2f} | {sec:.1f} |"
            )


def _classic(vals, dates, params, direction):
    """The classic forecast: WLS of 1/v of the last FIT_WINDOW local velocities on time."""
    t = fl.days_from_last(dates)
    v, tau, sxx = fl.local_velocities(vals * direction[:, None], t, params.velocity_window)
    tf, te, tl, _, _ = fl.inverse_velocity_fit(
        v, tau, sxx, params.fit_window, params.velocity_window, params.confidence
    )
    return tf, te, tl


def known_answer(repeats: int) -> None:
    print(
        f"\n## Known answer: Voight creep (1/v linear in time), 8 x 8 pixels in a 20 x 20 field, {repeats} seeds"
    )
    print(
        "noise on the creep: white 2 mm + AR(1) 1 mm; error = forecast - truth, relative to the remaining time"
    )
    print(
        "| dates | lead (days) | v 'lead' days before failure | method | with forecast | median abs error "
        "(pixels) | abs error of the slide's median | range holds truth |"
    )
    print("|---|---|---|---|---|---|---|---|")
    params = fl.Params()
    for irregular in (False, True):
        for lead, v_end in ((30, 2.0), (60, 1.0), (60, 2.0), (90, 1.0)):
            acc = {"Voight fit (default)": [], "classic WLS of 1/v": []}
            for seed in range(repeats):
                rng = np.random.default_rng(100 + seed)
                dates = (
                    syn.irregular_dates(START, 80, rng, gap=(40, 5))
                    if irregular
                    else syn.regular_dates(START, 100, 6)
                )
                d = syn.field("linear", dates, 20, rng)
                creep = -syn.voight_series(dates, dates[-1] + dt.timedelta(days=lead), v_end, lead)
                d[:, :8, :8] = creep[:, None, None] + syn.correlated_noise(
                    (len(dates), 8, 8), rng, white=2.0, ar=1.0, atmo=0.0
                )
                vals = d.reshape(len(dates), -1).T
                sel = np.zeros((20, 20), bool)
                sel[:8, :8] = True
                sel = sel.ravel()
                res = fl.analyse(vals, dates, params)
                acc["Voight fit (default)"].append((res.t_fail[sel], res.t_early[sel], res.t_late[sel]))
                tf, te, tl = _classic(vals[sel], dates, params, res.direction[sel])
                acc["classic WLS of 1/v"].append((tf, te, tl))
            for method, runs in acc.items():
                tf = np.concatenate([r[0] for r in runs])
                te = np.concatenate([r[1] for r in runs])
                tl = np.concatenate([r[2] for r in runs])
                ok = np.isfinite(tf)
                med = [abs(np.nanmedian(r[0]) - lead) / lead for r in runs if np.isfinite(r[0]).any()]
                holds = ((te <= lead) & (lead <= tl))[ok].mean() if ok.any() else float("nan")
                print(
                    f"| {'irregular + gaps' if irregular else '6-day'} | {lead} | {v_end} mm/day | {method} "
                    f"| {ok.mean():.0%} | {np.nanmedian(np.abs(tf - lead)) / lead:.1%} "
                    f"| {np.median(med) if med else float('nan'):.1%} (worst {max(med) if med else float('nan'):.1%}) "
                    f"| {holds:.0%} |"
                )


def maoxian() -> None:
    from deformation_forecast.core.points import read_points_csv

    if not os.path.isfile(MAOXIAN):
        print(f"\n(Maoxian data not found at {MAOXIAN})")
        return
    s = read_points_csv(MAOXIAN)
    print(
        f"\n## Maoxian retrospective: {s.count} SBAS points, {len(s.dates)} acquisitions {s.dates[0]}..{s.dates[-1]}"
    )
    print(f"real failure {MAOXIAN_FAILURE}; every acquisition is before it")
    print(
        "| data up to | FIT_WINDOW | CONFIDENCE | analysed | alerts 1/2/3 | forecasts | median forecast "
        "| 25-75 % of forecasts | median - real (days) | calibration |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for cut in (0, 1, 2):
        n = len(s.dates) - cut
        dates, last = s.dates[:n], s.dates[n - 1]
        for fw in (6, 8, 12):
            for conf in (0.99, 0.95, 0.9):
                try:
                    res = fl.analyse(s.values[:, :n], dates, fl.Params(fit_window=fw, confidence=conf))
                except Exception as e:  # a series too short for the window: say so in the table
                    print(f"| {last} | {fw} | {conf} | {e} |")
                    continue
                c = np.bincount(res.alert, minlength=4)
                tf = res.t_fail[np.isfinite(res.t_fail)]
                if tf.size:
                    med = fl.to_date(last, float(np.median(tf)))
                    q = [fl.to_date(last, float(v)) for v in np.percentile(tf, [25, 75])]
                    err = (med - MAOXIAN_FAILURE).days
                    fc = f"{med} | {q[0]}..{q[1]} | {err:+d}"
                else:
                    fc = "- | - | -"
                print(
                    f"| {last} | {fw} | {conf} | {int(res.analysed.sum())} | {c[1]}/{c[2]}/{c[3]} "
                    f"| {tf.size} | {fc} | {res.kappa:.2f} |"
                )
    # the statistic behind it: how many points accelerate at all, before the scene calibration
    res = fl.analyse(s.values, s.dates, fl.Params(fit_window=8), calibrate=False)
    with np.errstate(invalid="ignore"):
        t = res.direction * res.acceleration / res.acceleration_se
    print(
        f"\nwithout the scene calibration (FIT_WINDOW 8, CONFIDENCE 0.99): {int(res.significant.sum())} "
        f"significant, {int(np.isfinite(res.t_fail).sum())} forecasts; acceleration t statistics in the "
        f"direction of motion: median {np.nanmedian(t):.2f}, 95th percentile {np.nanpercentile(t, 95):.2f}, "
        f"max {np.nanmax(t):.2f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--small", action="store_true")
    a = ap.parse_args()
    false_alarms(60 if a.small else 200)
    known_answer(2 if a.small else 10)
    maoxian()


if __name__ == "__main__":
    main()
