"""queues.QueueList: Resque 3.0's queue selection (WIRE §3.2), against fixtures 07 and 07b."""
from __future__ import annotations

import pytest

from resque_compat.wire.queues import QueueList, fnmatch_ruby
from tests.keyspace import load_fixture


def _order(processing_order):
    """``["alpha/1", "beta/1", "beta/2"]`` -> the queues in the order first served."""
    seen = []
    for item in processing_order:
        queue = item.split("/")[0]
        if queue not in seen:
            seen.append(queue)
    return seen


def test_star_expands_alphabetically_as_fixture_07():
    fx = load_fixture("07_wildcard.json")
    known = fx["keys"]["resque:queues"]["value"]
    qs = QueueList(["*"])
    assert qs.dynamic and qs.has_star
    assert qs.expand(reversed(known)) == sorted(known) == _order(fx["processing_order"])
    assert qs.id_field == fx["worker_id"].split(":", 2)[2] == "*"


def test_priority_star_and_exclusion_as_fixture_07b():
    fx = load_fixture("07b_wildcard_priority_and_exclusion.json")
    known = fx["keys"]["resque:queues"]["value"]
    qs = QueueList(fx["queues_env"].split(","))
    assert qs.expand(known) == ["mid", "alpha", "zeta"] == _order(fx["processing_order"])
    assert "beta" not in qs.expand(known)
    # Ruby never took the beta jobs: they are still queued in the fixture
    assert len(fx["keys"]["resque:queue:beta"]["value"]) == 2
    assert qs.id_field == fx["worker_id"].split(":", 2)[2] == "mid,*"


def test_wire_example_critical_star_not_low():
    known = ["low", "high_x", "b", "critical", "a", "high_a"]
    assert QueueList(["critical", "*", "!low"]).expand(known) == ["critical", "a", "b", "high_a", "high_x"]


def test_globs_expand_per_pattern_in_pattern_order():
    known = ["high_b", "low", "high_a", "a", "highest"]
    assert QueueList(["high_*", "a"]).expand(known) == ["high_a", "high_b", "a"]
    assert QueueList(["high_?"]).expand(known) == ["high_a", "high_b"]
    assert QueueList(["high_[b]"]).expand(known) == ["high_b"]
    assert QueueList(["high_*", "a"]).id_field == "high_*,a"


def test_static_list_is_used_as_given_even_if_unknown():
    qs = QueueList(["low", "critical", "nope"])
    assert not qs.dynamic and not qs.has_star
    assert qs.expand(["critical"]) == ["low", "critical", "nope"]


def test_braces_are_literal_not_expanded():
    qs = QueueList(["{a,b}"])
    assert qs.dynamic
    assert qs.expand(["a", "b"]) == []
    assert qs.expand(["a", "{a,b}"]) == ["{a,b}"]


def test_negation_makes_a_list_dynamic_and_is_dropped_from_the_id():
    qs = QueueList(["a", "b", "!b"])
    assert qs.dynamic
    assert qs.id_field == "a,b"
    assert qs.expand(["a", "b"]) == ["a"]
    assert QueueList(["*", "!high_*"]).expand(["high_a", "low", "a"]) == ["a", "low"]


def test_entries_are_stripped_and_duplicates_removed():
    qs = QueueList([" mid ", "", "*"])
    assert qs.id_field == "mid,*"
    assert qs.expand(["zeta", "mid", "alpha"]) == ["mid", "alpha", "zeta"]
    assert not QueueList(["", " "])
    assert not QueueList(["!only_exclusion"])


@pytest.mark.parametrize("glob, name, matches", [
    ("*", ".hidden", False),        # File.fnmatch without FNM_DOTMATCH
    (".*", ".hidden", True),
    ("*", "a/b", True),             # no FNM_PATHNAME: '/' is ordinary
    ("A*", "abc", False),           # case-sensitive
    ("a?c", "abc", True),
    ("a[!b]c", "abc", False),
])
def test_fnmatch_follows_ruby_file_fnmatch(glob, name, matches):
    assert fnmatch_ruby(glob, name) is matches
