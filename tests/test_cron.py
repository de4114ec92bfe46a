"""Cron lines and their slots against the real fugit 1.5.2 (fixtures/fugit/next_times.json, made
by tests/fugit_oracle.rb), plus our DST rule: every slot once, never twice, never skipped."""
from __future__ import annotations

import datetime as dt
import json
import os
from zoneinfo import ZoneInfo

import pytest

from resque_compat.scheduler import cron
from resque_compat.scheduler.schedule import parse_duration
from tests.conftest import ROOT

with open(os.path.join(ROOT, "fixtures", "fugit", "next_times.json"), encoding="utf-8") as _fh:
    ORACLE = json.load(_fh)

STOCKHOLM = ZoneInfo("Europe/Stockholm")
NEW_YORK = ZoneInfo("America/New_York")


def _utc(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc).timestamp())


#: Where we differ from fugit on purpose (README "Recurring schedules"), with what we do instead:
#: a time-of-day job (hour field restricted) whose time falls in a DST gap runs once at the gap's
#: end, where fugit skips the day; and it runs once in a repeated hour, where fugit (driven by a
#: scheduler whose own zone is not the line's, e.g. UTC servers) runs it in both passes.
DIVERGENT = {
    ("30 2 * * * Europe/Stockholm", "2026-03-27 12:00:00"):
        ["2026-03-28 01:30:00", "2026-03-29 01:00:00", "2026-03-30 00:30:00", "2026-03-31 00:30:00"],
    ("30 2 * * * Europe/Stockholm", "2026-10-23 12:00:00"):
        ["2026-10-24 00:30:00", "2026-10-25 00:30:00", "2026-10-26 01:30:00", "2026-10-27 01:30:00"],
    ("0 1 * * * America/New_York", "2026-10-31 12:00:00"):
        ["2026-11-01 05:00:00", "2026-11-02 06:00:00", "2026-11-03 06:00:00"],
    ("0,30 1 * * * America/New_York", "2026-10-31 12:00:00"):
        ["2026-11-01 05:00:00", "2026-11-01 05:30:00", "2026-11-02 06:00:00", "2026-11-02 06:30:00",
         "2026-11-03 06:00:00", "2026-11-03 06:30:00"],
    ("30 2 * * * America/New_York", "2026-03-07 12:00:00"):
        ["2026-03-08 07:00:00", "2026-03-09 06:30:00", "2026-03-10 06:30:00"],
    ("*/20 2 * * * America/New_York", "2026-03-07 12:00:00"):
        ["2026-03-08 07:00:00", "2026-03-09 06:00:00", "2026-03-09 06:20:00", "2026-03-09 06:40:00"],
    ("30 2 * * *", "2026-03-07 12:00:00"):  # no suffix, scheduler in America/New_York
        ["2026-03-08 07:00:00", "2026-03-09 06:30:00", "2026-03-10 06:30:00"],
}


def _slots(line: cron.Cron, start: int, count: int):
    out, t = [], start
    for _ in range(count):
        t = line.next_time(t)
        out.append(t)
    return out


@pytest.mark.parametrize("case", ORACLE["cases"], ids=lambda c: f"{c['cron']}@{c['next_utc'][0]}")
def test_slots_equal_real_fugit_except_the_documented_dst_fixes(case):
    line = cron.parse(case["cron"], ZoneInfo(case["tz"]))
    got = _slots(line, case["from"], len(case["next"]))
    start = dt.datetime.fromtimestamp(case["from"], dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    expected = DIVERGENT.get((case["cron"], start))
    if expected is None:
        assert got == case["next"], f"fugit: {case['next_utc']}"
    else:
        assert got != case["next"], "fugit now agrees: drop the case from DIVERGENT"
        assert got == [_utc(t) for t in expected]


def test_the_oracle_covers_every_field_form_the_issue_names():
    lines = {c["cron"] for c in ORACLE["cases"]}
    for form in ("* * * * * * Europe/Stockholm", "0 0 L * *", "0 0 -2 * *", "30 4 1,15 * 5",
                 "0 0 */2 * 1", "0 22-2 * * *", "5/15 * * * *", "0 0 * * fri#-1", "0 0 * * * +0900"):
        assert form in lines
    assert ORACLE["fugit"] == "1.5.2"


@pytest.mark.parametrize("zone, days", [
    (STOCKHOLM, ("2026-03-28", "2026-03-29", "2026-03-30", "2026-10-24", "2026-10-25", "2026-10-26")),
    (NEW_YORK, ("2026-03-07", "2026-03-08", "2026-03-09", "2026-10-31", "2026-11-01", "2026-11-02")),
])
@pytest.mark.parametrize("line", ["30 2 * * *", "0 1 * * *", "0 3 * * *", "0,30 1,2 * * *", "15 30 2 * * *"])
def test_time_of_day_jobs_run_once_per_slot_across_both_transitions(zone, days, line):
    """A frozen clock walked across the spring-forward and fall-back nights of two zones: each
    wall-clock slot of each day runs exactly once (never twice, never skipped)."""
    parsed = cron.parse(line, zone)
    start = int(dt.datetime.fromisoformat(days[0]).replace(tzinfo=zone).timestamp()) - 1
    end = int(dt.datetime.fromisoformat(days[-1]).replace(tzinfo=zone).timestamp()) + 86400
    fired, t = [], start
    while True:
        t = parsed.next_time(t)
        if t >= end:
            break
        fired.append(t)
    assert fired == sorted(set(fired))
    per_day = {}
    for t in fired:
        local = dt.datetime.fromtimestamp(t, zone)
        per_day.setdefault(local.date().isoformat(), []).append(local)
    normal_day = _utc("2026-06-01 00:00:00")
    slots_per_day = sum(1 for t in _slots(cron.parse(line, dt.timezone.utc), normal_day - 1, 200)
                        if t < normal_day + 86400)
    spring = days[1]
    for day in days:
        runs = per_day.get(day, [])
        walls = [(r.hour, r.minute, r.second) for r in runs]
        assert len(walls) == len(set(walls)), f"{line} ran a wall-clock slot twice on {day}: {runs}"
        if day != spring:
            assert len(runs) == slots_per_day, f"{line} on {day}: {runs}"
        else:  # the slots that did not exist ran together at the end of the gap (03:00)
            assert 1 <= len(runs) <= slots_per_day
            assert any((r.hour, r.minute, r.second) == (3, 0, 0) for r in runs) or len(runs) == slots_per_day


def test_wildcard_hour_jobs_follow_real_time_through_the_repeated_hour():
    every_30 = cron.parse("*/30 * * * * Europe/Stockholm")
    got = _slots(every_30, _utc("2026-10-24 23:50:00"), 6)
    assert [t - got[0] for t in got] == [0, 1800, 3600, 5400, 7200, 9000]  # no gap, no double


@pytest.mark.parametrize("text, field", [
    ("61 * * * *", "minutes"),
    ("* 25 * * *", "hours"),
    ("0 0 32 * *", "day of month"),
    ("0 0 * 13 *", "month"),
    ("0 0 * * 8", "day of week"),
    ("0 0 30 2 *", "day of month"),
    ("0 0 * * tue%2", "day of week"),
    ("0 5 * * * Mars/Olympus", "zone"),
    ("0 5 * * * * Mars/Olympus", "zone"),
    ("*/0 * * * *", "minutes"),
    ("* * *", "cron"),
])
def test_invalid_lines_name_the_field(text, field):
    with pytest.raises(cron.CronError) as info:
        cron.parse(text)
    assert info.value.field == field, str(info.value)


def test_a_line_without_zone_uses_the_scheduler_zone():
    line = cron.parse("0 5 * * *", STOCKHOLM)
    assert line.zone_name is None
    assert line.next_time(_utc("2026-12-07 05:29:51")) == _utc("2026-12-08 04:00:00")  # fixture sched_01


@pytest.mark.parametrize("text, seconds", [
    ("2s", 2), ("30s", 30), ("1m", 60), ("1h30m", 5400), ("1.5h", 5400), ("2d", 172800),
    ("1w", 604800), ("1M", 2592000), ("1y", 31536000), ("90", 90), (45, 45), ("2 days", 172800),
    ("1h, 30m", 5400),
])
def test_every_durations_as_fugit_reads_them(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "1x", "", "s"])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError):
        parse_duration(text)
