"""Blackjack-v1 as an exact finite MDP.

Gymnasium's Blackjack draws every card from an infinite deck: ranks 1 (ace) to 9 with probability
1/13 each and 10 (ten and the faces) with probability 4/13. Cards are independent, so the game is a
finite MDP whose state is what the rules ever look at:

* the player's hand, as ``(sum, usable ace)``: ``sum`` counts a usable ace as 11 (``sum_hand``), and
  an ace that would bust as 11 counts as 1 forever after, so no other detail of the hand matters;
* the dealer's showing card ``1..10``;
* a hidden flag *natural*: the first two cards are an ace and a ten. The observation shows
  ``(21, card, 1)`` both for a natural and for a soft 21 reached by hitting; only the stick reward
  tells them apart.

Hit (action 1) draws a card: a sum above 21 is a bust (terminal, reward -1). Stick (action 0) ends
the episode; the dealer shows the hidden card and draws while ``sum_hand < 17`` (a soft 17 stands),
and the reward is ``cmp(player, dealer)`` with a bust dealer scoring 0. Naturals follow the
environment's flags: with ``sab`` a player natural beats any dealer hand but a dealer natural (a
draw); without ``sab``, ``natural`` pays 1.5 for a natural that wins. The dealer's hidden card
enters only through the stick outcomes: :func:`dealer_outcomes` gives the exact joint law of the
dealer's final score and natural, by recursion over the dealer's draws.
"""

from __future__ import annotations

from collections import defaultdict
from fractions import Fraction
from functools import cache

import numpy as np
from gymnasium.envs.toy_text.blackjack import BlackjackEnv

from tabrl.exact.mdp import TabularMDP, from_transitions

__all__ = ["BlackjackEnv", "blackjack_mdp", "dealer_outcomes", "CARD_PROBABILITY"]

#: The law of one card of the infinite deck, exactly.
CARD_PROBABILITY: dict[int, Fraction] = {
    card: Fraction(4 if card == 10 else 1, 13) for card in range(1, 11)
}

STICK, HIT = 0, 1
Outcome = tuple[float, int, float, bool]  #: ``(probability, next state, reward, terminal)``
#: Player hands: hard sums 4..21, soft sums 12..21, and the natural (a soft 21 of two cards).
HANDS: list[tuple[int, bool, bool]] = (
    [(total, False, False) for total in range(4, 22)]
    + [(total, True, False) for total in range(12, 22)]
    + [(21, True, True)]
)
DEALER_CARDS = range(1, 11)
#: Q-table layout of the observation ``(sum, dealer card, usable ace)`` in
#: ``Tuple(Discrete(32), Discrete(11), Discrete(2))``.
OBS_SIZES = (32, 11, 2)


def hand_value(raw: int, has_ace: bool) -> tuple[int, bool]:
    """``(sum_hand, usable ace)`` of cards adding up to ``raw`` with aces counted as 1."""
    usable = has_ace and raw + 10 <= 21
    return raw + 10 * usable, usable


def add_card(total: int, usable: bool, card: int) -> tuple[int, bool]:
    """The hand ``(sum_hand, usable ace)`` after drawing ``card``.

    A hand without a usable ace may still hold an ace, but only with a raw sum of 12 or more,
    where no ace can ever become usable again: ``(sum, usable)`` says everything.
    """
    raw = total - 10 * usable + card
    return hand_value(raw, usable or card == 1)


@cache
def _dealer_finish(raw: int, has_ace: bool) -> dict[int, Fraction]:
    """Law of the dealer's final score (0 for a bust) from a hand of raw sum ``raw``."""
    total, _ = hand_value(raw, has_ace)
    if total > 21:
        return {0: Fraction(1)}
    if total >= 17:
        return {total: Fraction(1)}
    law: dict[int, Fraction] = defaultdict(Fraction)
    for card, p in CARD_PROBABILITY.items():
        for score, q in _dealer_finish(raw + card, has_ace or card == 1).items():
            law[score] += p * q
    return dict(law)


@cache
def dealer_outcomes(showing: int) -> dict[tuple[int, bool], Fraction]:
    """Exact joint law of ``(final score, natural)`` of the dealer who shows ``showing``.

    The score is 0 for a bust; natural means the two first cards are an ace and a ten.
    """
    law: dict[tuple[int, bool], Fraction] = defaultdict(Fraction)
    for hidden, p in CARD_PROBABILITY.items():
        natural = {showing, hidden} == {1, 10}
        for score, q in _dealer_finish(showing + hidden, 1 in (showing, hidden)).items():
            law[score, natural] += p * q
    return dict(law)


def stick_reward(total: int, natural: bool, dealer_score: int, dealer_natural: bool,
                 natural_pays: bool, sab: bool) -> float:
    """The reward of ``BlackjackEnv.step(0)``, rule for rule."""
    reward = float(total > dealer_score) - float(total < dealer_score)
    if sab:
        return 1.0 if natural and not dealer_natural else reward
    if natural_pays and natural and reward == 1.0:
        return 1.5
    return reward


def _merged(outcomes: list[tuple[Fraction, int, float, bool]]) -> list[Outcome]:
    """Outcomes with the same next state, reward and end added up into one."""
    law: dict[tuple[int, float, bool], Fraction] = defaultdict(Fraction)
    for p, state, reward, terminal in outcomes:
        law[state, reward, terminal] += p
    return [(float(p), state, reward, terminal) for (state, reward, terminal), p in law.items()]


@cache  # building it takes exact fractions and ~10 ms: once per rule set is enough
def blackjack_mdp(natural: bool, sab: bool, horizon: int | None) -> TabularMDP:
    """Blackjack-v1 with the flags ``natural`` and ``sab`` as an exact :class:`TabularMDP`.

    Terminal outcomes point back to the state they leave: after the end nothing is read but
    the terminal flag.
    """
    states = [(hand, card) for hand in HANDS for card in DEALER_CARDS]
    index = {state: i for i, state in enumerate(states)}

    transitions: dict[int, dict[int, list[Outcome]]] = {}
    for s, ((total, usable, is_natural), card) in enumerate(states):
        stick = [
            (p, s, stick_reward(total, is_natural, score, dealer_natural, natural, sab), True)
            for (score, dealer_natural), p in dealer_outcomes(card).items()
        ]
        hit = []
        for drawn, p in CARD_PROBABILITY.items():
            new_total, new_usable = add_card(total, usable, drawn)
            if new_total > 21:
                hit.append((p, s, -1.0, True))
            else:
                hit.append((p, index[(new_total, new_usable, False), card], 0.0, False))
        transitions[s] = {STICK: _merged(stick), HIT: _merged(hit)}

    initial = np.zeros(len(states))
    for first, p in CARD_PROBABILITY.items():
        for second, q in CARD_PROBABILITY.items():
            total, usable = hand_value(first + second, 1 in (first, second))
            hand = (total, usable, {first, second} == {1, 10})
            for card, r in CARD_PROBABILITY.items():
                initial[index[hand, card]] += float(p * q * r)

    rows = [
        (total * OBS_SIZES[1] + card) * OBS_SIZES[2] + usable
        for (total, usable, _), card in states
    ]
    return from_transitions(
        transitions,
        initial,
        n_actions=2,
        horizon=horizon,
        row_of_state=np.asarray(rows, dtype=np.int64),
        n_rows=int(np.prod(OBS_SIZES)),
    )
