"""Member lifetime value: BG/NBD and Gamma-Gamma, fitted by maximum likelihood.

Pure numpy/scipy, no Django: data in, parameters and predictions out.

BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way"):
while alive a member buys at a Poisson rate λ ~ Gamma(r, α); after every
repeat purchase they drop out with probability p ~ Beta(a, b). Per member the
model reads x (repeat purchases), t_x (time of the last purchase since the
first) and T (time from the first purchase to the cut-off), time in weeks.

Gamma-Gamma (Fader, Hardie & Lee 2005, "RFM and CLV"; Fader & Hardie 2013
note): the value of a purchase is Gamma(p, ν), ν ~ Gamma(q, γ) per member;
it is fitted on the mean spend of the repeat purchases of members with x > 0.

All likelihoods are computed in logs (gammaln, betaln, logaddexp) and the
optimiser works on log-parameters, so the parameters stay positive and the
search does not overflow. Members with identical (x, t_x, T) are folded into
one weighted row, which makes a fit on a million members cheap.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1

WEEKS_PER_YEAR = 365.25 / 7  # 12 months ahead, in the model's time unit


class ClvFitError(ValueError):
    """The data cannot identify the model (too few members or repeat purchases)."""


@dataclass(frozen=True)
class BgNbdParams:
    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float = float("nan")

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class GammaGammaParams:
    p: float
    q: float
    gamma: float
    log_likelihood: float = float("nan")

    def mean_spend(self) -> float:
        """Population mean spend per purchase, p·γ/(q−1) (finite because q > 1)."""
        return self.p * self.gamma / (self.q - 1.0)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _arrays(*columns: object) -> list[np.ndarray]:
    return [np.asarray(c, dtype=float) for c in columns]


# --- BG/NBD -----------------------------------------------------------------


def bgnbd_log_likelihood_terms(
    r: float, alpha: float, a: float, b: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
) -> np.ndarray:
    """Per-member log-likelihood ln L(r, α, a, b | x, t_x, T) (FHL 2005, eq. 6)."""
    # ln A1 = ln Γ(r+x) − ln Γ(r) + r ln α ; ln A2 = ln B(a, b+x) − ln B(a, b)
    log_a1 = gammaln(r + x) - gammaln(r) + r * math.log(alpha)
    log_a2 = betaln(a, b + x) - betaln(a, b)
    log_a3 = -(r + x) * np.log(alpha + T)
    repeat = x > 0
    # ln A4 only exists for x > 0 (b + x − 1 > 0 there); elsewhere it contributes nothing.
    log_a4 = np.full_like(x, -np.inf)
    xr = x[repeat]
    log_a4[repeat] = math.log(a) - np.log(b + xr - 1.0) - (r + xr) * np.log(alpha + t_x[repeat])
    return log_a1 + log_a2 + np.logaddexp(log_a3, log_a4)


def _fold(*columns: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Unique rows of the columns, their counts, and the map back to the members."""
    stacked = np.column_stack(columns)
    unique, inverse, counts = np.unique(stacked, axis=0, return_inverse=True, return_counts=True)
    return [unique[:, i] for i in range(unique.shape[1])], counts.astype(float), inverse.ravel()


def _fit_log_params(
    negative_ll: object, starts: list[np.ndarray], bound: float = 12.0
) -> tuple[np.ndarray, float]:
    """Minimise over log-parameters from several starts; the best converged point wins."""
    best_x: np.ndarray | None = None
    best_f = np.inf
    for start in starts:
        result = minimize(
            negative_ll,
            start,
            method="L-BFGS-B",
            bounds=[(-bound, bound)] * len(start),
            options={"maxiter": 500, "ftol": 1e-13, "gtol": 1e-8},
        )
        if np.isfinite(result.fun) and result.fun < best_f:
            best_x, best_f = result.x, float(result.fun)
    if best_x is None:
        raise ClvFitError("the likelihood could not be evaluated at any starting point")
    # A Nelder-Mead polish of the best point: the finite-difference gradient
    # is noisy on flat ridges (a and b of BG/NBD are weakly identified). Capped:
    # on a nearly flat ridge it would wander for long for no visible gain.
    polished = minimize(
        negative_ll,
        best_x,
        method="Nelder-Mead",
        options={"maxfev": 800, "xatol": 1e-6, "fatol": 1e-10},
    )
    if np.isfinite(polished.fun) and polished.fun < best_f:
        best_x, best_f = polished.x, float(polished.fun)
    best_x = np.clip(best_x, -bound, bound)
    return best_x, best_f


def bgnbd_fit(x: object, t_x: object, T: object) -> BgNbdParams:
    """Maximum-likelihood BG/NBD parameters for the members' (x, t_x, T)."""
    x_arr, tx_arr, T_arr = _arrays(x, t_x, T)
    if x_arr.size < 10:
        raise ClvFitError(f"BG/NBD needs at least 10 members with a purchase, got {x_arr.size}")
    if not np.any(x_arr > 0):
        raise ClvFitError("BG/NBD needs some members with repeat purchases, there are none")
    if np.any(tx_arr > T_arr + 1e-9) or np.any(x_arr < 0) or np.any(tx_arr < 0):
        raise ClvFitError("each member needs 0 ≤ t_x ≤ T and x ≥ 0")
    (ux, utx, uT), weights, _ = _fold(x_arr, tx_arr, T_arr)

    def negative_ll(theta: np.ndarray) -> float:
        r, alpha, a, b = np.exp(theta)
        with np.errstate(all="ignore"):
            terms = bgnbd_log_likelihood_terms(r, alpha, a, b, ux, utx, uT)
            value = -float((weights * terms).sum())
        return value if np.isfinite(value) else 1e300

    # Starts: r = 1 with α matching the observed purchase rate, and the usual unit start.
    rate = max(float(np.mean(x_arr)) / max(float(np.mean(T_arr)), 1e-9), 1e-6)
    starts = [np.log([1.0, 1.0 / rate, 1.0, 1.0]), np.zeros(4), np.log([0.5, 5.0, 0.5, 2.0])]
    theta, f = _fit_log_params(negative_ll, starts)
    r, alpha, a, b = (float(v) for v in np.exp(theta))
    return BgNbdParams(r=r, alpha=alpha, a=a, b=b, log_likelihood=-f)


def bgnbd_p_alive(params: BgNbdParams, x: object, t_x: object, T: object) -> np.ndarray:
    """P(still a customer at T | x, t_x, T). Members with no repeat purchase are alive (model)."""
    x_arr, tx_arr, T_arr = _arrays(x, t_x, T)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    out = np.ones_like(x_arr)
    repeat = x_arr > 0
    xr = x_arr[repeat]
    # 1 / (1 + a/(b+x−1) · ((α+T)/(α+t_x))^(r+x)), the power taken in logs.
    log_ratio = (
        math.log(a)
        - np.log(b + xr - 1.0)
        + (r + xr) * (np.log(alpha + T_arr[repeat]) - np.log(alpha + tx_arr[repeat]))
    )
    out[repeat] = np.exp(-np.logaddexp(0.0, log_ratio))
    return out


def bgnbd_expected_purchases(
    params: BgNbdParams, t: float, x: object, t_x: object, T: object
) -> np.ndarray:
    """E[purchases in (T, T+t] | x, t_x, T] (FHL 2005, eq. 10)."""
    x_arr, tx_arr, T_arr = _arrays(x, t_x, T)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    z = t / (alpha + T_arr + t)
    hyp = hyp2f1(r + x_arr, b + x_arr, a + b + x_arr - 1.0, z)
    with np.errstate(all="ignore"):
        power = np.exp((r + x_arr) * (np.log(alpha + T_arr) - np.log(alpha + T_arr + t)))
        numerator = (a + b + x_arr - 1.0) / (a - 1.0) * (1.0 - power * hyp)
        denominator = np.ones_like(x_arr)
        repeat = x_arr > 0
        xr = x_arr[repeat]
        denominator[repeat] += np.exp(
            math.log(a)
            - np.log(b + xr - 1.0)
            + (r + xr) * (np.log(alpha + T_arr[repeat]) - np.log(alpha + tx_arr[repeat]))
        )
        result = numerator / denominator
    # hyp2f1 loses precision for very long histories; there the member is
    # effectively a Poisson buyer at their posterior rate, times P(alive).
    bad = ~np.isfinite(result) | (result < 0)
    if np.any(bad):
        posterior_rate = (r + x_arr[bad]) / (alpha + T_arr[bad])
        alive = bgnbd_p_alive(params, x_arr[bad], tx_arr[bad], T_arr[bad])
        result[bad] = posterior_rate * t * alive
    return result


def bgnbd_simulate(
    params: BgNbdParams, T: object, rng: np.random.Generator, *, future: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw (x, t_x) for members observed T weeks after their first purchase.

    The third array counts each member's purchases in (T, T + future], for
    checking predictions against what the model then actually did.
    """
    T_arr = np.asarray(T, dtype=float)
    n = T_arr.size
    lam = rng.gamma(shape=params.r, scale=1.0 / params.alpha, size=n)
    drop = rng.beta(params.a, params.b, size=n)
    x = np.zeros(n)
    t_x = np.zeros(n)
    later = np.zeros(n)
    clock = np.zeros(n)
    alive = np.ones(n, dtype=bool)
    while alive.any():
        idx = np.flatnonzero(alive)
        clock[idx] += rng.exponential(1.0 / lam[idx])
        observed = clock[idx] <= T_arr[idx]
        in_future = ~observed & (clock[idx] <= T_arr[idx] + future)
        x[idx[observed]] += 1
        t_x[idx[observed]] = clock[idx[observed]]
        later[idx[in_future]] += 1
        buyers = idx[observed | in_future]
        alive[idx[~(observed | in_future)]] = False
        # After each repeat purchase the member drops out with probability p.
        alive[buyers[rng.random(buyers.size) < drop[buyers]]] = False
    return x, t_x, later


# --- Gamma-Gamma ------------------------------------------------------------


def gamma_gamma_log_likelihood_terms(
    p: float, q: float, gamma: float, x: np.ndarray, m: np.ndarray
) -> np.ndarray:
    """ln f(m_x | p, q, γ, x) for the mean spend m_x of x repeat purchases."""
    px = p * x
    return (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * math.log(gamma)
        + (px - 1.0) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(gamma + x * m)
    )


def gamma_gamma_fit(x: object, monetary: object) -> GammaGammaParams:
    """Maximum-likelihood Gamma-Gamma parameters; members with x = 0 or no spend are left out.

    q is kept above 1 (q = 1 + e^θ): below it the expected spend is infinite.
    """
    x_arr, m_arr = _arrays(x, monetary)
    keep = (x_arr > 0) & (m_arr > 0)
    x_arr, m_arr = x_arr[keep], m_arr[keep]
    if x_arr.size < 10:
        raise ClvFitError(
            f"Gamma-Gamma needs at least 10 members with repeat purchases, got {x_arr.size}"
        )
    # Work in units of the median spend so γ starts near 1 whatever the currency.
    scale = float(np.median(m_arr))
    (ux, um), weights, _ = _fold(x_arr, m_arr / scale)

    def unpack(theta: np.ndarray) -> tuple[float, float, float]:
        return math.exp(theta[0]), 1.0 + math.exp(theta[1]), math.exp(theta[2])

    def negative_ll(theta: np.ndarray) -> float:
        p, q, gamma = unpack(theta)
        with np.errstate(all="ignore"):
            value = -float((weights * gamma_gamma_log_likelihood_terms(p, q, gamma, ux, um)).sum())
        return value if np.isfinite(value) else 1e300

    starts = [np.log([1.0, 1.0, 1.0]), np.log([5.0, 2.0, 2.0]), np.log([0.5, 0.5, 0.5])]
    theta, f = _fit_log_params(negative_ll, starts)
    p, q, gamma = unpack(theta)
    # Back to money: γ scales with spend; the likelihood gains ln(scale) per member.
    log_likelihood = -f - float(np.sum(weights)) * math.log(scale)
    return GammaGammaParams(p=p, q=q, gamma=gamma * scale, log_likelihood=log_likelihood)


def gamma_gamma_expected_spend(params: GammaGammaParams, x: object, monetary: object) -> np.ndarray:
    """E[spend per purchase | x, m_x] = (γ + x·m_x)·p / (p·x + q − 1).

    At x = 0 it is the population mean p·γ/(q − 1).
    """
    x_arr, m_arr = _arrays(x, monetary)
    m_arr = np.where(x_arr > 0, m_arr, 0.0)
    return (params.gamma + x_arr * m_arr) * params.p / (params.p * x_arr + params.q - 1.0)


def gamma_gamma_simulate(
    params: GammaGammaParams, x: object, rng: np.random.Generator
) -> np.ndarray:
    """Mean spend of x purchases per member (x > 0), drawn from the model."""
    x_arr = np.asarray(x, dtype=float)
    nu = rng.gamma(shape=params.q, scale=1.0 / params.gamma, size=x_arr.size)
    # The sum of x Gamma(p, ν) spends is Gamma(p·x, ν).
    total = rng.gamma(shape=params.p * np.maximum(x_arr, 1.0), scale=1.0 / nu)
    return total / np.maximum(x_arr, 1.0)


# --- Both together ----------------------------------------------------------


@dataclass(frozen=True)
class MemberPrediction:
    expected_purchases: np.ndarray
    p_alive: np.ndarray
    expected_spend: np.ndarray
    value: np.ndarray


def clv_predict(
    bgnbd: BgNbdParams,
    gamma_gamma: GammaGammaParams,
    *,
    x: object,
    t_x: object,
    T: object,
    monetary: object,
    horizon_weeks: float = WEEKS_PER_YEAR,
) -> MemberPrediction:
    """Per member: purchases expected over the horizon, P(alive), spend per purchase, value."""
    purchases = bgnbd_expected_purchases(bgnbd, horizon_weeks, x, t_x, T)
    spend = gamma_gamma_expected_spend(gamma_gamma, x, monetary)
    return MemberPrediction(
        expected_purchases=purchases,
        p_alive=bgnbd_p_alive(bgnbd, x, t_x, T),
        expected_spend=spend,
        value=purchases * spend,
    )
