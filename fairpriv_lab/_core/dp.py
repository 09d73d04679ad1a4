"""What differential privacy guarantees, in the units the audit reports.

:func:`advantage_bound` is DP's ceiling on any membership attack; ``audit`` re-exports it and
``viz`` draws it on every risk-against-epsilon chart. Taught in notebook 4.
"""

from __future__ import annotations

import math
from typing import Literal

from . import validate as V

__all__ = ["advantage_bound"]


def advantage_bound(
    epsilon: float,
    delta: float = 0.0,
    *,
    neighbours: Literal["add_remove", "substitute"] = "add_remove",
) -> float:
    """Largest membership advantage (TPR - FPR, = IPR) any attack can have under (eps, delta)-DP.

    For neighbouring data sets differing in one record, every test of "in" against "out" has
    ``TPR <= e^eps FPR + delta`` and ``1 - FPR <= e^eps (1 - TPR) + delta``; the corner of that
    region gives

        advantage <= (e^eps - 1 + 2 delta) / (e^eps + 1)

    (attack accuracy ``(1 + advantage) / 2``; Yeom et al. 2018 for delta = 0, Humphries et
    al. 2020). ``neighbours="substitute"`` is the ALOOA and half-split games, whose "in" and
    "out" training sets differ by swapping the target for another record: add/remove DP at
    (eps, delta) gives substitution DP at (2 eps, (1 + e^eps) delta) (group privacy of two),
    which is then used in the formula. The value is a fraction, capped at 1; GPR in
    percentage points is at most ``100 *`` this. Taught in notebook 4.

    Parameters
    ----------
    epsilon : float
        The accounted budget, in (0, inf]; inf (SGD) gives 1.
    delta : float
        The accounted delta, in [0, 1).
    neighbours : {"add_remove", "substitute"}
        The neighbouring relation of the game the attack plays.

    Returns
    -------
    float
        The bound on TPR - FPR, in [0, 1].

    Examples
    --------
    >>> round(advantage_bound(1.0), 4)
    0.4621
    >>> round(advantage_bound(0.5, neighbours="substitute"), 4)
    0.4621
    """
    eps = V.number("epsilon", epsilon, 0.0, math.inf, low_open=True, high_open=False)
    dlt = V.number("delta", delta, 0.0, 1.0, high_open=True)
    V.choice("neighbours", neighbours, ("add_remove", "substitute"))
    if math.isinf(eps):
        return 1.0
    if neighbours == "substitute":
        eps, dlt = 2 * eps, min(1.0, (1 + math.exp(eps)) * dlt)
    return min(1.0, (math.expm1(eps) + 2 * dlt) / (math.exp(eps) + 1))
