"""The CLV model recovers the parameters it was simulated from.

Stated tolerance (also in the README): with 10,000 simulated members (fixed
seed), each fitted parameter lies within a relative distance of the true
one of r ±10 %, α ±15 %, a ±35 %, b ±35 % (BG/NBD, CDNOW values of FHL 2005)
and p ±25 %, q ±10 %, γ ±35 %, mean spend ±5 % (Gamma-Gamma, CDNOW values).
These are about three sampling standard errors, measured over ten seeds
(r 2.7 %, α 4 %, a 10 %, b 12 %; p 8 %, q 3 %, γ 11 %, mean spend 1.2 %):
a and b, and p and γ, trade off along a ridge, so they are the loosest.
"""

from __future__ import annotations

import numpy as np
import pytest

from analytics.clv import (
    WEEKS_PER_YEAR,
    BgNbdParams,
    ClvFitError,
    GammaGammaParams,
    bgnbd_expected_purchases,
    bgnbd_fit,
    bgnbd_log_likelihood_terms,
    bgnbd_p_alive,
    bgnbd_simulate,
    clv_predict,
    gamma_gamma_expected_spend,
    gamma_gamma_fit,
    gamma_gamma_simulate,
)

CDNOW = BgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426)
CDNOW_SPEND = GammaGammaParams(p=6.25, q=3.74, gamma=15.44)
BGNBD_TOLERANCE = {"r": 0.10, "alpha": 0.15, "a": 0.35, "b": 0.35}
GG_TOLERANCE = {"p": 0.25, "q": 0.10, "gamma": 0.35}


@pytest.fixture(scope="module")
def cohort() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20050101)
    n = 10_000
    T = rng.uniform(26, 78, n)  # first purchases spread over a year, weeks to the cut-off
    x, t_x, later = bgnbd_simulate(CDNOW, T, rng, future=WEEKS_PER_YEAR)
    return {"x": x, "t_x": t_x, "T": T, "later": later}


@pytest.fixture(scope="module")
def bgnbd(cohort: dict[str, np.ndarray]) -> BgNbdParams:
    return bgnbd_fit(cohort["x"], cohort["t_x"], cohort["T"])


def test_bgnbd_fit_recovers_the_cdnow_parameters_within_the_stated_tolerance(
    bgnbd: BgNbdParams,
) -> None:
    for name, tolerance in BGNBD_TOLERANCE.items():
        true, fitted = getattr(CDNOW, name), getattr(bgnbd, name)
        assert abs(fitted / true - 1) <= tolerance, (name, fitted, true)


def test_bgnbd_fit_is_a_maximum_better_than_the_true_parameters(
    bgnbd: BgNbdParams, cohort: dict[str, np.ndarray]
) -> None:
    args = (cohort["x"], cohort["t_x"], cohort["T"])

    def total(p: BgNbdParams) -> float:
        return float(np.sum(bgnbd_log_likelihood_terms(p.r, p.alpha, p.a, p.b, *args)))

    at_truth, at_fit = total(CDNOW), total(bgnbd)
    assert at_fit == pytest.approx(bgnbd.log_likelihood)
    assert at_fit >= at_truth
    # And no nearby point is better: nudging any parameter by 2 % lowers the likelihood.
    for name in ("r", "alpha", "a", "b"):
        for factor in (0.98, 1.02):
            nudged = {**bgnbd.as_dict(), name: getattr(bgnbd, name) * factor}
            value = bgnbd_log_likelihood_terms(
                nudged["r"], nudged["alpha"], nudged["a"], nudged["b"], *args
            )
            assert float(np.sum(value)) < at_fit


def test_expected_purchases_match_what_the_simulated_members_did_next_year(
    bgnbd: BgNbdParams, cohort: dict[str, np.ndarray]
) -> None:
    predicted = bgnbd_expected_purchases(
        bgnbd, WEEKS_PER_YEAR, cohort["x"], cohort["t_x"], cohort["T"]
    )
    assert np.all(np.isfinite(predicted)) and np.all(predicted >= 0)
    assert predicted.sum() == pytest.approx(cohort["later"].sum(), rel=0.05)
    # Frequent buyers are predicted to buy more than one-off buyers, as they did.
    frequent = cohort["x"] >= 5
    assert predicted[frequent].mean() > 3 * predicted[cohort["x"] == 0].mean()
    assert predicted[frequent].mean() == pytest.approx(cohort["later"][frequent].mean(), rel=0.15)


def test_p_alive_falls_the_longer_a_repeat_buyer_has_been_silent() -> None:
    x = np.array([0, 4, 4, 4])
    t_x = np.array([0.0, 50.0, 30.0, 5.0])
    T = np.array([52.0, 52.0, 52.0, 52.0])
    alive = bgnbd_p_alive(CDNOW, x, t_x, T)
    assert alive[0] == 1.0  # BG/NBD: nobody drops out before their first repeat purchase
    assert 1 > alive[1] > alive[2] > alive[3] > 0


def test_expected_purchases_are_finite_for_very_long_and_busy_histories() -> None:
    x = np.array([0, 1, 200, 2000])
    t_x = np.array([0.0, 1.0, 500.0, 519.0])
    T = np.array([520.0, 520.0, 520.0, 520.0])
    predicted = bgnbd_expected_purchases(CDNOW, WEEKS_PER_YEAR, x, t_x, T)
    assert np.all(np.isfinite(predicted))
    assert predicted[3] > predicted[2] > predicted[1]


def test_gamma_gamma_fit_recovers_the_spend_parameters_within_the_stated_tolerance(
    cohort: dict[str, np.ndarray],
) -> None:
    rng = np.random.default_rng(7)
    x = cohort["x"]
    monetary = np.where(x > 0, gamma_gamma_simulate(CDNOW_SPEND, x, rng), 0.0)
    fitted = gamma_gamma_fit(x, monetary)  # members with x = 0 are left out by the fit
    for name, tolerance in GG_TOLERANCE.items():
        true, got = getattr(CDNOW_SPEND, name), getattr(fitted, name)
        assert abs(got / true - 1) <= tolerance, (name, got, true)
    assert fitted.mean_spend() == pytest.approx(CDNOW_SPEND.mean_spend(), rel=0.05)


def test_gamma_gamma_fit_does_not_depend_on_the_currency_unit(
    cohort: dict[str, np.ndarray],
) -> None:
    rng = np.random.default_rng(8)
    x = cohort["x"][cohort["x"] > 0][:3000]
    monetary = gamma_gamma_simulate(CDNOW_SPEND, x, rng)
    in_roubles = gamma_gamma_fit(x, monetary)
    in_kopecks = gamma_gamma_fit(x, monetary * 100)
    assert in_kopecks.p == pytest.approx(in_roubles.p, rel=1e-3)
    assert in_kopecks.q == pytest.approx(in_roubles.q, rel=1e-3)
    assert in_kopecks.gamma == pytest.approx(in_roubles.gamma * 100, rel=1e-3)


def test_expected_spend_shrinks_a_members_mean_towards_the_population_mean() -> None:
    population = CDNOW_SPEND.mean_spend()
    spend = gamma_gamma_expected_spend(CDNOW_SPEND, [0, 1, 20], [0.0, 200.0, 200.0])
    assert spend[0] == pytest.approx(population)
    assert population < spend[1] < spend[2] < 200.0


def test_predicted_value_is_purchases_times_spend() -> None:
    prediction = clv_predict(
        CDNOW, CDNOW_SPEND, x=[0, 3], t_x=[0.0, 20.0], T=[30.0, 30.0], monetary=[0.0, 50.0]
    )
    assert np.allclose(prediction.value, prediction.expected_purchases * prediction.expected_spend)
    assert prediction.value[1] > prediction.value[0] > 0


def test_a_fit_without_repeat_purchases_is_refused_with_a_reason() -> None:
    with pytest.raises(ClvFitError, match="repeat"):
        bgnbd_fit(np.zeros(50), np.zeros(50), np.full(50, 10.0))
    with pytest.raises(ClvFitError, match="repeat"):
        gamma_gamma_fit([1, 2], [10.0, 20.0])
