"""``[[routing]]``: rule validation, predicates, type globs, destination order and ``stop``."""

from __future__ import annotations

import datetime as dt
import tomllib
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from callboard.queues._routing import Destination, Predicate, RouteMatch, Router, RouteRule

RULES = TypeAdapter(list[RouteRule])

# The shape users write: TOML inline tables are one line each.
TOML = """
[[routing]]
match = { type = "shop.Order", where = { "total" = { gt = 1000 }, "region" = { in = ["eu", "uk"] } } }
to = ["queue:big_orders", "topic:business.orders.big"]

[[routing]]
match = { type = "shop.*" }
to = ["topic:business.shop", "queue:big_orders"]
"""  # noqa: E501

Q = Destination("queue", "big_orders")
BIG = Destination("topic", "business.orders.big")
SHOP = Destination("topic", "business.shop")


def router(*rules: dict[str, Any]) -> Router:
    return Router(RULES.validate_python(list(rules)))


def holds(predicate: dict[str, Any], data: dict[str, Any], path: str = "f") -> bool:
    rule = {"match": {"where": {path: predicate}}, "to": ["queue:q"]}
    return router(rule).destinations("T", data) == [Destination("queue", "q")]


# -- the config users write ---------------------------------------------------------------


def test_the_documented_toml_routes_big_european_orders() -> None:
    routing = Router(RULES.validate_python(tomllib.loads(TOML)["routing"]))
    assert routing.destinations("shop.Order", {"total": 1500, "region": "eu"}) == [Q, BIG, SHOP]
    assert routing.destinations("shop.Order", {"total": 1500.5, "region": "uk"}) == [Q, BIG, SHOP]
    assert routing.destinations("shop.Order", {"total": 1000, "region": "eu"}) == [SHOP, Q]
    assert routing.destinations("shop.Order", {"total": 1500, "region": "us"}) == [SHOP, Q]
    assert routing.destinations("shop.Refund", {"total": 5000, "region": "eu"}) == [SHOP, Q]
    assert routing.destinations("crm.Lead", {"total": 5000, "region": "eu"}) == []


def test_the_table_form_loads_too() -> None:
    text = """
    [[routing]]
    to = ["queue:audit"]
    stop = true
    [routing.match]
    type = "*"
    [routing.match.where."customer.tier"]
    in = ["gold"]
    """
    (rule,) = RULES.validate_python(tomllib.loads(text)["routing"])
    assert rule.stop and rule.destinations == (Destination("queue", "audit"),)
    assert rule.match.matches("x.Y", {"customer": {"tier": "gold"}})


# -- type -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "type_name", "expected"),
    [
        ("shop.Order", "shop.Order", True),
        ("shop.Order", "shop.OrderLine", False),
        ("shop.Order", "shop.order", False),
        ("shop.*", "shop.Order", True),
        ("shop.*", "shop.sub.Order", True),
        ("shop.*", "shopping.Order", False),
        ("*.Order", "shop.Order", True),
        ("*Order*", "shop.OrderLine", True),
        ("*", "anything.at.all", True),
        ("shop.?rder", "shop.Order", False),  # only '*' is special
        ("shop.[O]rder", "shop.Order", False),
        (None, "anything", True),
    ],
)
def test_type_is_exact_or_a_star_glob(pattern: str | None, type_name: str, expected: bool) -> None:
    assert RouteMatch(type=pattern).matches(type_name, {}) is expected


def test_an_empty_match_selects_every_message() -> None:
    assert router({"match": {}, "to": ["queue:all"]}).destinations("a.B", {}) == [
        Destination("queue", "all")
    ]


# -- predicates ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("predicate", "value", "expected"),
    [
        ({"eq": "eu"}, "eu", True),
        ({"eq": "eu"}, "EU", False),
        ({"eq": 1}, 1.0, True),
        ({"eq": 1}, True, False),
        ({"eq": True}, 1, False),
        ({"eq": True}, True, True),
        ({"eq": None}, None, True),
        ({"eq": [1, 2]}, [1, 2], True),
        ({"eq": {"a": 1}}, {"a": 1}, True),
        ({"ne": "eu"}, "us", True),
        ({"ne": "eu"}, "eu", False),
        ({"ne": 1}, True, True),
        ({"gt": 1000}, 1001, True),
        ({"gt": 1000}, 1000, False),
        ({"ge": 1000}, 1000, True),
        ({"lt": 1.5}, 1, True),
        ({"le": 1.5}, 1.5, True),
        ({"le": 1.5}, 2, False),
        ({"gt": "b"}, "c", True),
        ({"lt": "b"}, "c", False),
        ({"in": ["eu", "uk"]}, "uk", True),
        ({"in": ["eu", "uk"]}, "us", False),
        ({"in": [1, 2]}, True, False),
        ({"in": [[1], {"a": 1}]}, {"a": 1}, True),  # unhashable values are fine
        ({"in": []}, "x", False),
        ({"not_in": ["eu", "uk"]}, "us", True),
        ({"not_in": ["eu", "uk"]}, "eu", False),
        ({"not_in": []}, "x", True),
        ({"exists": True}, None, True),
        ({"exists": True}, 0, True),
        ({"exists": False}, 0, False),
        ({"matches": "^ord-[0-9]+$"}, "ord-42", True),
        ({"matches": "^ord-[0-9]+$"}, "ord-42x", False),
        ({"matches": "[0-9]"}, "abc7", True),  # re.search: unanchored
        ({"matches": "[0-9]"}, 7, False),
        ({"gt": 10, "lt": 20}, 15, True),  # all operators must hold
        ({"gt": 10, "lt": 20}, 25, False),
        ({"ge": 0, "ne": 5, "not_in": [7]}, 6, True),
    ],
)
def test_operators(predicate: dict[str, Any], value: Any, expected: bool) -> None:
    assert holds(predicate, {"f": value}) is expected


@pytest.mark.parametrize(
    ("predicate", "value"),
    [
        ({"gt": 1000}, "1500"),
        ({"lt": "z"}, 1),
        ({"gt": 0}, True),
        ({"ge": 0}, None),
        ({"lt": 10}, [1]),
        ({"gt": 0}, {"a": 1}),
        ({"gt": dt.date(2024, 1, 1)}, "2025-01-01"),
        ({"gt": dt.date(2024, 1, 1)}, dt.datetime(2025, 1, 1)),
        ({"gt": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)}, dt.datetime(2025, 1, 1)),
        ({"gt": 1.0}, float("nan")),
        ({"matches": "x"}, b"x"),
    ],
)
def test_incompatible_comparisons_are_non_matches_not_errors(
    predicate: dict[str, Any], value: Any
) -> None:
    assert holds(predicate, {"f": value}) is False


def test_dates_and_times_compare() -> None:
    later = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
    assert holds({"gt": dt.datetime(2025, 1, 1, tzinfo=dt.UTC)}, {"f": later})
    assert holds({"lt": dt.date(2025, 1, 1)}, {"f": dt.date(2024, 12, 31)})
    assert holds({"ge": dt.time(9, 0)}, {"f": dt.time(9, 0)})


@pytest.mark.parametrize(
    "predicate",
    [
        {"eq": None},
        {"ne": 1},
        {"gt": 0},
        {"in": [None]},
        {"not_in": [1]},
        {"exists": True},
        {"matches": ".*"},
    ],
)
def test_a_missing_field_fails_every_operator(predicate: dict[str, Any]) -> None:
    assert holds(predicate, {"other": 1}) is False


def test_a_missing_field_passes_exists_false() -> None:
    assert holds({"exists": False}, {"other": 1}) is True


def test_a_field_path_walks_nested_dicts_and_lists() -> None:
    data = {"customer": {"address": {"country": "fr"}}, "lines": [{"sku": "A"}, {"sku": "B"}]}
    assert holds({"eq": "fr"}, data, "customer.address.country")
    assert holds({"eq": "B"}, data, "lines.1.sku")
    assert holds({"exists": False}, data, "lines.2.sku")
    assert holds({"exists": False}, data, "lines.x")
    assert holds({"exists": False}, data, "customer.address.country.code")  # through a str
    assert holds({"exists": False}, data, "customer.missing.country")
    assert holds({"exists": True}, data, "customer.address")


def test_every_where_entry_must_hold() -> None:
    rule = {"match": {"where": {"a": {"eq": 1}, "b": {"eq": 2}}}, "to": ["queue:q"]}
    routing = router(rule)
    assert routing.destinations("T", {"a": 1, "b": 2}) == [Destination("queue", "q")]
    assert routing.destinations("T", {"a": 1, "b": 3}) == []
    assert routing.destinations("T", {"a": 1}) == []


# -- destinations and stop ----------------------------------------------------------------


def test_destinations_are_unique_in_rule_order() -> None:
    routing = router(
        {"match": {}, "to": ["queue:b", "topic:t.x", "queue:b"]},
        {"match": {"type": "nope"}, "to": ["queue:never"]},
        {"match": {}, "to": ["queue:a", "topic:t.x", "topic:b"]},
    )
    assert [str(d) for d in routing.destinations("T", {})] == [
        "queue:b",
        "topic:t.x",
        "queue:a",
        "topic:b",
    ]


def test_a_matching_stop_rule_ends_the_search() -> None:
    routing = router(
        {"match": {"where": {"vip": {"eq": True}}}, "to": ["queue:vip"], "stop": True},
        {"match": {"where": {"x": {"exists": True}}}, "to": ["queue:x"], "stop": True},
        {"match": {}, "to": ["queue:everything"]},
    )
    assert routing.destinations("T", {"vip": True, "x": 1}) == [Destination("queue", "vip")]
    assert routing.destinations("T", {"vip": False, "x": 1}) == [Destination("queue", "x")]
    assert routing.destinations("T", {}) == [Destination("queue", "everything")]


def test_no_rules_no_destinations() -> None:
    assert Router([]).destinations("T", {"a": 1}) == []


def test_destination_parse_and_str() -> None:
    assert Destination.parse("queue:big_orders") == Destination("queue", "big_orders")
    assert Destination.parse("queue:2-q_" + "x" * 60) == Destination("queue", "2-q_" + "x" * 60)
    assert Destination.parse("topic:a.b-c") == Destination("topic", "a.b-c")
    assert str(Destination("topic", "a.b")) == "topic:a.b"
    assert len({Destination.parse("queue:a"), Destination("queue", "a")}) == 1


# -- validation ---------------------------------------------------------------------------


def error_of(rule: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        RouteRule.model_validate(rule)
    return str(info.value)


@pytest.mark.parametrize(
    ("rule", "says"),
    [
        ({"match": {}, "to": ["bucket:a"]}, "'bucket:a' must be 'queue:<name>' or 'topic:<topic>'"),
        ({"match": {}, "to": ["big_orders"]}, "must be 'queue:<name>' or 'topic:<topic>'"),
        ({"match": {}, "to": ["queue:"]}, "queue name '' must be"),
        ({"match": {}, "to": ["queue:a b"]}, "queue name 'a b' must be 1-64 letters"),
        ({"match": {}, "to": ["queue:a.b"]}, "queue name 'a.b' must be"),
        ({"match": {}, "to": ["queue:" + "q" * 65]}, "must be 1-64"),
        ({"match": {}, "to": ["topic:a..b"]}, "segment 2 is empty"),
        ({"match": {}, "to": ["topic:a.*"]}, "wildcard"),
        ({"match": {}, "to": []}, "at least 1 item"),
        ({"match": {}}, "to\n  Field required"),
        ({"to": ["queue:a"]}, "match\n  Field required"),
        ({"match": {}, "to": ["queue:a"], "stop": "yes"}, "stop\n  Input should be a valid bool"),
        ({"match": {}, "to": ["queue:a"], "then": 1}, "then\n  Extra inputs are not permitted"),
        ({"match": {"kind": "x"}, "to": ["queue:a"]}, "match.kind\n  Extra inputs"),
        ({"match": {"type": ""}, "to": ["queue:a"]}, "match.type"),
        ({"match": {"where": {"a..b": {"eq": 1}}}, "to": ["queue:a"]}, "field path 'a..b'"),
        ({"match": {"where": {"f": 5}}, "to": ["queue:a"]}, "match.where.f"),
        (
            {"match": {"where": {"f": {"gte": 1}}}, "to": ["queue:a"]},
            "unknown predicate operator 'gte'; expected eq, ne, gt, ge, lt, le, in, not_in, "
            "exists, matches",
        ),
        ({"match": {"where": {"f": {}}}, "to": ["queue:a"]}, "empty predicate"),
        (
            {"match": {"where": {"f": {"matches": "ord-(["}}}, "to": ["queue:a"]},
            "match.where.f.matches\n  Value error, invalid regular expression 'ord-(['",
        ),
        ({"match": {"where": {"f": {"matches": 3}}}, "to": ["queue:a"]}, "regular expression"),
        ({"match": {"where": {"f": {"gt": [1]}}}, "to": ["queue:a"]}, "match.where.f.gt"),
        ({"match": {"where": {"f": {"gt": True}}}, "to": ["queue:a"]}, "number, string, date"),
        ({"match": {"where": {"f": {"lt": None}}}, "to": ["queue:a"]}, "number, string, date"),
        ({"match": {"where": {"f": {"in": "eu"}}}, "to": ["queue:a"]}, "match.where.f.in"),
        ({"match": {"where": {"f": {"exists": "no"}}}, "to": ["queue:a"]}, "f.exists"),
        (
            {"match": {"where": {"f": {"exists": False, "eq": 1}}}, "to": ["queue:a"]},
            "exists = false with eq can never match",
        ),
    ],
)
def test_invalid_rules_say_what_is_wrong(rule: dict[str, Any], says: str) -> None:
    assert says in error_of(rule)


def test_exists_true_combines_with_other_operators() -> None:
    predicate = Predicate.model_validate({"exists": True, "in": [1, 2]})
    assert predicate.holds(2) and not predicate.holds(3)


def test_rules_are_immutable() -> None:
    rule = RouteRule.model_validate({"match": {}, "to": ["queue:a"]})
    with pytest.raises(ValidationError):
        rule.stop = True  # type: ignore[misc]
