"""Exact references: an environment's whole MDP as arrays, and its exact solution.

- :mod:`tabrl.exact.mdp`: :class:`TabularMDP`, a finite MDP as flat CSR arrays (data only);
- :mod:`tabrl.exact.readers`: :func:`mdp_of`, the MDP of an environment (toy-text ``P``, Blackjack);
- :mod:`tabrl.exact.blackjack`: Blackjack-v1's infinite deck as an exact MDP;
- :mod:`tabrl.exact.dp`: dynamic programming, :func:`solve` and :func:`evaluate_policy_exact`;
- :mod:`tabrl.exact.reference`: a learned policy beside the optimum, for reports.
"""
