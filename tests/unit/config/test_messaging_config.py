"""[queues], [bus] and [[routing]]: validation and the services subtree they produce."""

from __future__ import annotations

import pytest

from callboard import ConfigError
from callboard._services import queue_path, services_spec
from callboard.config import load_config


def test_without_messaging_config_there_are_no_services() -> None:
    config = load_config({}, env={})
    assert not config.services_enabled and services_spec(config) is None


def test_a_queue_brings_the_services_subtree_with_a_dead_letters_queue() -> None:
    config = load_config({"queues": {"jobs": {"durable": False}}}, env={})
    spec = services_spec(config)
    assert spec is not None and spec.supervisor is not None
    ids = [c.id for c in spec.supervisor.children]
    assert ids == ["queue.jobs", "queue.dead_letters"]  # no bus unless asked for
    assert not config.bus_enabled
    sink = spec.supervisor.children[1].args
    assert sink["dead_letter_sink"] is True and sink["durable"] is False


def test_the_bus_starts_after_the_queues_and_gets_durable_subscriptions_and_rules() -> None:
    config = load_config({
        "queues": {"audit": {}},
        "bus": {"durable": {"audit": {"pattern": "orders.#"}}},
        "routing": [{"match": {"type": "shop.Order"}, "to": ["queue:audit", "topic:a.b"]}],
    }, env={})  # fmt: skip
    assert config.bus_enabled
    spec = services_spec(config)
    assert spec is not None and spec.supervisor is not None
    bus = spec.supervisor.children[-1]
    assert bus.id == "bus"
    assert bus.args["durable"] == {"audit": "orders.#"}
    assert bus.args["routing"][0]["to"] == ["queue:audit", "topic:a.b"]


def test_durable_queue_paths_default_under_the_state_dir() -> None:
    config = load_config({"daemon": {"state_dir": "/srv/cb"}, "queues": {"jobs": {}}}, env={})
    assert queue_path(config, "jobs", config.queues["jobs"]) == "/srv/cb/queues/jobs.sqlite"
    config = load_config({"queues": {"jobs": {"path": "/data/j.db"}}}, env={})
    assert queue_path(config, "jobs", config.queues["jobs"]) == "/data/j.db"


@pytest.mark.parametrize(
    ("raw", "where", "reason"),
    [
        ({"queues": {"bad name": {}}}, "queues", "invalid_queue_name"),
        ({"bus": {"durable": {"audit": {"pattern": "a.#"}}}}, "bus.durable.audit",
         "unknown_queue"),
        ({"routing": [{"match": {}, "to": ["queue:nope"]}]}, "routing.0.to", "unknown_queue"),
        ({"bus": {"durable": {"a": {"pattern": "a..b"}}}, "queues": {"a": {}}},
         "bus.durable.a.pattern", "invalid_topic"),
        ({"bus": {"enabled": True},
          "supervisor": {"children": [{"id": "bus", "actor": "m:C"}]}},
         "supervisor.children.0.id", "reserved_name"),
        ({"queues": {"jobs": {"overflow": "drop"}}}, "queues.jobs.overflow", ""),
        ({"queues": {"jobs": {"max_deliveries": 0}}}, "queues.jobs.max_deliveries", ""),
    ],
)  # fmt: skip
def test_invalid_messaging_config_is_rejected_with_its_location(
    raw: dict[str, object], where: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(raw, env={})
    located = [(path, msg) for path, msg in info.value.errors if path.startswith(where)]
    assert located, info.value.errors
    assert any(reason in msg for _, msg in located)


def test_routing_rules_reach_the_bus_exactly_as_written() -> None:
    from callboard.queues._routing import RouteRule

    rule = {"match": {"type": "a.*", "where": {"total": {"gt": 5}, "region": {"in": ["eu"]},
                                               "x": {"exists": False}}},
            "to": ["queue:q"], "stop": True}  # fmt: skip
    config = load_config({"queues": {"q": {}}, "routing": [rule]}, env={})
    spec = services_spec(config)
    assert spec is not None and spec.supervisor is not None
    (sent,) = spec.supervisor.children[-1].args["routing"]
    assert sent == rule
    assert RouteRule.model_validate(sent) == config.routing[0]
