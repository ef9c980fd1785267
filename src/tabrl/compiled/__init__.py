"""The compiled engine: tabular learning on a known MDP with numba, bit for bit reproducible.

Where tabrl knows an environment's whole MDP (:func:`tabrl.exact.readers.mdp_of`), it does not
need to call ``env.step`` at all: it samples the MDP's arrays inside numba kernels, hundreds of
times faster than the Python loop, with the same statistics.

- :func:`run_compiled` trains an agent of any method and exploration strategy for a chunk of
  episodes (what ``tabrl.training`` calls); :func:`supports` says which it has kernels for.
- :func:`run_batch` trains many settings times seeds at once, spread over the cores.
- :func:`play` plays a fixed policy: the greedy evaluation on the exact dynamics, and
  :func:`rollout` the same as a training log.
- :func:`warm_up` compiles the kernels (or loads them from numba's disk cache), timed.
"""

from tabrl.compiled.batch import BatchResult, run_batch
from tabrl.compiled.bridge import supports
from tabrl.compiled.engine import run_compiled
from tabrl.compiled.play import Played, play, rollout
from tabrl.compiled.warm import WarmUp, warm_up

__all__ = ["BatchResult", "Played", "WarmUp", "play", "rollout", "run_batch", "run_compiled",
           "supports", "warm_up"]
