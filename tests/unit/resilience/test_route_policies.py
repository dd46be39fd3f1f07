"""``[policies]``: route keys, fallback validation, and how target and route combine."""

from __future__ import annotations

from pathlib import Path

import pytest

from callboard.config import load_config
from callboard.errors import ConfigError
from callboard.resilience import Policy, parse_route, resolve_policy

# The exact shape issue 6 shows users writing: inline tables are one line each in TOML.
TOML = """
[policies.reward_model]
timeout = 0.5
retry = { max_attempts = 3, backoff = "exponential_jitter", base = 0.01, max = 0.2, on = ["timeout", "crashed", "restarting"] }
breaker = { window = "count", size = 20, min_calls = 10, failure_rate = 0.5, slow_call_s = 0.3, slow_call_rate = 0.8, open_s = 1.0, open_max_s = 30.0, half_open_calls = 1, success_threshold = 1, half_open_max_s = 5.0 }
fallback = { mode = "static", reply = { scores = [0.0] }, degraded = true }
bulkhead = { max_concurrent = 32, queue = 64 }

[policies."rejection_sampling->reward_model"]
timeout = 0.2
"""


def test_the_shape_users_write_loads(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(TOML)
    cfg = load_config(path, env={})
    target = cfg.policies["reward_model"]
    assert target.timeout == 0.5 and target.retry is not None and target.retry.max_attempts == 3
    assert target.breaker is not None and target.breaker.size == 20
    assert target.fallback is not None and target.fallback.reply == {"scores": [0.0]}
    assert target.bulkhead is not None and target.bulkhead.queue == 64


def test_a_route_overrides_only_the_keys_it_sets(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(TOML)
    policies = load_config(path, env={}).policies
    routed = resolve_policy(policies, "rejection_sampling", "reward_model")
    assert routed.timeout == 0.2  # from the route
    assert routed.retry == policies["reward_model"].retry  # inherited from the target
    assert routed.fallback == policies["reward_model"].fallback
    assert resolve_policy(policies, "someone_else", "reward_model").timeout == 0.5
    assert resolve_policy(policies, None, "reward_model").timeout == 0.5  # the host
    assert resolve_policy(policies, "x", "unlisted") == Policy()  # no policy: defaults


def test_a_route_alone_applies_without_a_target_policy() -> None:
    policies = {"a->b": Policy(timeout=0.3)}
    assert resolve_policy(policies, "a", "b").timeout == 0.3
    assert resolve_policy(policies, "c", "b").timeout is None


@pytest.mark.parametrize(
    ("key", "expected"),
    [("b", (None, "b")), ("a->b", ("a", "b")), ("sup.x-1->w_2", ("sup.x-1", "w_2"))],
)
def test_parse_route(key: str, expected: tuple[str | None, str]) -> None:
    assert parse_route(key) == expected


@pytest.mark.parametrize("key", ["", "->b", "a->", "a->b->c", "a b", "1abc"])
def test_bad_route_keys_are_rejected_at_load(key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"policies": {key: {"timeout": 1.0}}}, env={})
    assert info.value.errors[0][1].startswith("invalid_route:")


@pytest.mark.parametrize(
    ("fallback", "reason"),
    [
        ({"mode": "static"}, "needs a reply"),
        ({"mode": "substitute"}, "needs a target"),
        ({"mode": "last_good", "target": "x"}, "only mode 'substitute'"),
        ({"mode": "sometimes"}, "Input should be"),
    ],
)
def test_incomplete_fallbacks_are_rejected(fallback: dict[str, object], reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"policies": {"t": {"fallback": fallback}}}, env={})
    path, message = info.value.errors[0]
    assert path.startswith("policies.t.fallback") and reason in message


def test_bad_policy_values_name_their_key() -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"policies": {"t": {"timeout": 0, "bulkhead": {"max_concurrent": 0}}}}, env={})
    paths = {p for p, _ in info.value.errors}
    assert "policies.t.timeout" in paths and "policies.t.bulkhead.max_concurrent" in paths
