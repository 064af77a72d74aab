"""Balance: the order in which a request tries a route's candidates.

First cut of the routing policy: weighted random order among healthy
candidates, then the unhealthy ones as a last resort (a target whose circuit
is open is still tried when nothing else is left, so that a request fails
with the upstream's own error rather than a guess). Pure: it reads the
candidates' state and a random source, and changes nothing.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from router.registry import Candidate


def weighted_order(
    candidates: Sequence[Candidate], now: float, rng: random.Random | None = None
) -> list[Candidate]:
    """Candidates in the order to try them.

    Healthy ones come first, in a weighted random order (Efraimidis–Spirakis:
    each gets the key ``u ** (1 / weight)`` and the largest key goes first, so
    a target with twice the weight leads twice as often). Unhealthy ones follow
    in the same kind of order.
    """
    if len(candidates) <= 1:
        return list(candidates)
    draw = (rng or random).random
    keyed = [
        (c.upstream.is_available(now), draw() ** (1.0 / c.weight), i, c) for i, c in enumerate(candidates)
    ]
    keyed.sort(reverse=True)
    return [c for _, _, _, c in keyed]
