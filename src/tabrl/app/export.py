"""A run's greedy policy as a plain file, to be used without tabrl, and read back.

``tabrl export RUN`` writes one record per visited state: the state as the environment emits it
(an integer, or a tuple such as Blackjack's ``(player sum, dealer card, usable ace)``), the
greedy action (ties to the lowest action, the policy tabrl evaluates) and the action values.

* **CSV**: a header ``observation,action,q_0,...`` (``observation_0,observation_1,...`` for tuple
  observations), one row per state; floats are written so that they read back exactly.
* **JSON**: ``{"format": "tabrl-policy", "version": 1, "env_id", "env_kwargs", "bins",
  "obs_bounds", "n_actions", "states": [{"observation", "action", "q_values"}, ...]}``; the
  environment's description says where the observations come from (binned ones are cell indices).

:func:`load_policy` reads either back, checking every field, into a :class:`Policy`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tabrl.app.runs import Run
from tabrl.errors import RunFolderError, UsageError
from tabrl.fileio import atomic_write_bytes, read_json

FORMATS = ("csv", "json")
FORMAT_TAG, FORMAT_VERSION = "tabrl-policy", 1

Observation = int | tuple[int, ...]


def observation_key(obs: Any) -> Observation:
    """An observation as a plain, hashable key: an int, or a tuple of ints (numpy ones too)."""
    if isinstance(obs, (tuple, list, np.ndarray)):
        return tuple(int(part) for part in obs)
    return int(obs)


@dataclass(eq=False)  # equal as mappings: the same action in every state
class Policy(Mapping):
    """A greedy policy read from a file: ``policy[obs]`` or ``policy.action(obs)`` is its action.

    ``q_values[obs]`` holds the action values the action was chosen from. The mapping holds the
    states the agent visited; ``action`` of another state is a one-line error.
    """

    actions: dict[Observation, int]
    q_values: dict[Observation, np.ndarray]
    n_actions: int
    env: dict[str, Any] = field(default_factory=dict)  #: env_id, env_kwargs, bins (JSON only)

    def action(self, obs: Any) -> int:
        """The greedy action of ``obs`` (an int or a tuple, as the environment emits it)."""
        key = observation_key(obs)
        if key not in self.actions:
            raise UsageError(f"the policy has no action for the observation {key!r}: the agent "
                             "never visited that state")
        return self.actions[key]

    def __getitem__(self, obs: Any) -> int:
        return self.actions[observation_key(obs)]

    def __iter__(self) -> Iterator[Observation]:
        return iter(self.actions)

    def __len__(self) -> int:
        return len(self.actions)


def policy_of_run(run: Run) -> Policy:
    """The greedy policy of a run's agent over the states it visited."""
    table = run.load_agent().q_values
    greedy = table.greedy_policy()
    rows = np.flatnonzero(table.visited())
    observations = [observation_key(table.encoder.decode(int(row))) for row in rows]
    config = run.config
    return Policy(
        actions={obs: int(greedy[row]) for obs, row in zip(observations, rows)},
        q_values={obs: table.array[row].copy() for obs, row in zip(observations, rows)},
        n_actions=table.n_actions,
        env={"env_id": config.env_id, "env_kwargs": config.env_kwargs, "bins": config.bins,
             "obs_bounds": config.obs_bounds},
    )


def export_run(
    run: Run, fmt: str | None = None, out: Path | None = None
) -> tuple[Path, Policy]:
    """Write the run's greedy policy as csv or json to ``out`` (default: ``policy.csv`` in the
    run). The format is ``fmt``, or else ``out``'s suffix, which must match it either way:
    :func:`load_policy` tells the formats apart by the suffix."""
    suffix = out.suffix.lower().lstrip(".") if out is not None else ""
    fmt = fmt or (suffix if suffix in FORMATS else "csv")
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}: use csv or json")
    if out is not None and suffix != fmt:
        raise UsageError(f"--out {out} does not end in .{fmt}: name the file policy.{fmt}, so "
                         "that tabrl.load_policy knows its format")
    path = Path(out) if out is not None else run.path / f"policy.{fmt}"
    policy = policy_of_run(run)
    text = policy_csv(policy) if fmt == "csv" else policy_json(policy)
    try:
        return atomic_write_bytes(path, text.encode()), policy
    except OSError as error:
        raise RunFolderError(f"cannot write {path} ({error.strerror}): choose another --out") \
            from None


def policy_csv(policy: Policy) -> str:
    """The policy as CSV: observation column(s), action, one column of values per action."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    first = next(iter(policy.actions), 0)
    width = len(first) if isinstance(first, tuple) else None
    obs_columns = ["observation"] if width is None else [f"observation_{i}" for i in range(width)]
    writer.writerow([*obs_columns, "action", *(f"q_{a}" for a in range(policy.n_actions))])
    for obs, action in policy.actions.items():
        parts = list(obs) if width is not None else [obs]
        writer.writerow([*parts, action, *(repr(float(q)) for q in policy.q_values[obs])])
    return buffer.getvalue()


def policy_json(policy: Policy) -> str:
    """The policy as JSON, with the environment it was learned on; one line per state."""
    header = {"format": FORMAT_TAG, "version": FORMAT_VERSION, **policy.env,
              "n_actions": policy.n_actions}
    states = [json.dumps({"observation": list(obs) if isinstance(obs, tuple) else obs,
                          "action": action, "q_values": [float(q) for q in policy.q_values[obs]]})
              for obs, action in policy.actions.items()]
    fields = [f"{json.dumps(name)}: {json.dumps(value)}" for name, value in header.items()]
    return ("{\n  " + ",\n  ".join(fields) + ',\n  "states": [\n    '
            + ",\n    ".join(states) + "\n  ]\n}\n")


def load_policy(path: str | Path) -> Policy:
    """Read a policy written by ``tabrl export`` (CSV or JSON, told apart by the suffix)."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return _policy_from_json(path)
    if path.suffix.lower() == ".csv":
        return _policy_from_csv(path)
    raise UsageError(f"{path} is neither .csv nor .json: give a file written by `tabrl export`")


def _policy_from_json(path: Path) -> Policy:
    document = read_json(path, "the policy")
    if not isinstance(document, dict) or document.get("format") != FORMAT_TAG:
        raise RunFolderError(f"{path} is not a tabrl policy (no \"format\": \"{FORMAT_TAG}\")")
    if document.get("version") != FORMAT_VERSION:
        raise RunFolderError(f"{path} is a tabrl policy of version {document.get('version')!r}; "
                             f"this tabrl reads version {FORMAT_VERSION}")
    n_actions, states = document.get("n_actions"), document.get("states")
    if not isinstance(n_actions, int) or n_actions < 1 or not isinstance(states, list):
        raise RunFolderError(f"{path} lacks a positive n_actions or the list of states")
    records = []
    for i, state in enumerate(states):
        if not isinstance(state, dict) or not {"observation", "action", "q_values"} <= set(state):
            raise RunFolderError(f"{path}: state {i} needs observation, action and q_values")
        records.append((state["observation"], state["action"], state["q_values"]))
    env = {name: document.get(name) for name in ("env_id", "env_kwargs", "bins", "obs_bounds")}
    return _checked_policy(path, records, n_actions, env)


def _policy_from_csv(path: Path) -> Policy:
    try:
        rows = list(csv.reader(io.StringIO(path.read_text())))
    except FileNotFoundError:
        raise RunFolderError(f"{path} is missing: the policy cannot be read") from None
    except (UnicodeDecodeError, csv.Error) as error:
        raise RunFolderError(f"{path} is not a CSV file ({error})") from None
    if not rows:
        raise RunFolderError(f"{path} is empty: export the policy again")
    header, body = rows[0], rows[1:]
    n_obs = sum(1 for name in header if name.startswith("observation"))
    n_actions = len(header) - n_obs - 1
    scalar = header[:1] == ["observation"]  # else a tuple: observation_0, observation_1, ...
    expected = ((["observation"] if scalar else [f"observation_{i}" for i in range(n_obs)])
                + ["action"] + [f"q_{a}" for a in range(n_actions)])
    if n_obs == 0 or n_actions < 1 or header != expected:
        raise RunFolderError(f"{path} has the header {','.join(header)}; a tabrl policy has "
                             "observation(s), action, q_0, q_1, ...")
    records = []
    for line, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise RunFolderError(f"{path}, line {line}: {len(row)} fields, the header has "
                                 f"{len(header)}")
        try:
            parts = [int(x) for x in row[:n_obs]]
            action = int(row[n_obs])
            q_values = [float(x) for x in row[n_obs + 1:]]
        except ValueError as error:
            raise RunFolderError(f"{path}, line {line}: {error}") from None
        records.append((parts[0] if scalar else parts, action, q_values))
    return _checked_policy(path, records, n_actions, {})


def _checked_policy(
    path: Path, records: list[tuple[Any, Any, Any]], n_actions: int, env: dict[str, Any]
) -> Policy:
    """A policy from ``(observation, action, q_values)`` records, each checked."""
    actions: dict[Observation, int] = {}
    q_values: dict[Observation, np.ndarray] = {}
    for i, (obs, action, values) in enumerate(records):
        if not _is_observation(obs):
            raise RunFolderError(f"{path}: state {i} has the observation {obs!r}; observations "
                                 "are integers or lists of integers")
        key = observation_key(obs)
        if key in actions:
            raise RunFolderError(f"{path}: the observation {key!r} appears twice")
        if not isinstance(action, int) or isinstance(action, bool) or not 0 <= action < n_actions:
            raise RunFolderError(f"{path}: the action {action!r} of {key!r} is not one of "
                                 f"0..{n_actions - 1}")
        if (not isinstance(values, list) or len(values) != n_actions
                or not all(isinstance(q, (int, float)) for q in values)):
            raise RunFolderError(f"{path}: {key!r} needs {n_actions} action values")
        actions[key], q_values[key] = action, np.asarray(values, dtype=np.float64)
    return Policy(actions, q_values, n_actions, env)


def _is_observation(obs: Any) -> bool:
    def is_int(x: Any) -> bool:
        return isinstance(x, int) and not isinstance(x, bool)

    return is_int(obs) or (isinstance(obs, list) and bool(obs) and all(map(is_int, obs)))
