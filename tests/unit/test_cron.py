"""Due-time logic of cron entries: pure functions, `now` always passed in."""

import importlib.resources
import os
import time
import zoneinfo
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modulatio_d.core.cron import (
    ALIASES,
    DEFAULT_GRACE,
    MAX_CATCH_UP,
    MAX_COUNTED,
    CatchUp,
    Decision,
    decide,
    kickoff_id,
    next_fires,
    parse_schedule,
    parse_zone,
    scheduled_times,
)
from modulatio_d.store.zones import host_zone

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")  # DST moves the clock by 30 minutes
USE = "use 5 fields: minute hour day-of-month month day-of-week"


def at(zone, *fields, fold=0):
    return datetime(*fields, tzinfo=zone, fold=fold)


def times(schedule, zone, after, until, limit=1000):
    result = scheduled_times(schedule, zone, after, until, limit)
    assert not result.cut
    return result.times


def iso(values):
    return [t.isoformat() for t in values]


# --- schedules ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "norm"),
    [
        ("0 6 * * *", "0 6 * * *"),
        ("  */5\t9-17  * * mon-fri ", "*/5 9-17 * * mon-fri"),
        ("0 0 L * *", "0 0 L * *"),
        ("0 0 30 2 mon", "0 0 30 2 mon"),  # either field matches: Mondays of February
    ],
)
def test_parse_schedule_normalizes(expr, norm):
    assert parse_schedule(expr) == norm


@pytest.mark.parametrize(
    ("alias", "fields"),
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
    ],
)
def test_at_forms_map_to_five_fields(alias, fields):
    assert parse_schedule(alias) == fields
    assert parse_schedule(alias.upper()) == fields
    assert alias in ALIASES and len(ALIASES) == 7


def test_at_forms_fire_when_their_fields_do():
    after = at(UTC, 2025, 1, 1)
    assert iso(next_fires("@weekly", UTC, after, 2)) == [
        "2025-01-05T00:00:00+00:00",
        "2025-01-12T00:00:00+00:00",
    ]
    assert iso(next_fires("@monthly", BERLIN, after, 2)) == [
        "2025-02-01T00:00:00+01:00",
        "2025-03-01T00:00:00+01:00",
    ]
    assert iso(next_fires("@yearly", UTC, after, 1)) == ["2026-01-01T00:00:00+00:00"]


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        (
            "0 25 * * *",
            (
                f'schedule "0 25 * * *" is not a valid cron expression: '
                f"hour 25 is out of range 0-23; {USE}"
            ),
        ),
        ("60 * * * *", "minute 60 is out of range 0-59"),
        ("0 0 0 * *", "day-of-month 0 is out of range 1-31"),
        ("0 0 * 13 *", "month 13 is out of range 1-12"),
        ("0 0 * * 8", "day-of-week 8 is out of range 0-7"),
        ("1-70 * * * *", "minute 70 is out of range 0-59"),
        ("*/0 * * * *", 'minute step "*/0" must be at least 1'),
        ("0 0 * foo *", 'month "foo" is not valid'),
        ("0 0 * * 1#6", 'day-of-week "1#6" is not valid'),
        ("R * * * *", 'minute "R" uses H or R (hashed, random), which is not supported'),
        ("0 H * * *", 'hour "H" uses H or R'),
        (
            "0 0 * * * *",
            f'schedule "0 0 * * * *" has 6 fields: seconds and years are not supported; {USE}',
        ),
        ("0 0 0 * * * 2030", "has 7 fields: seconds and years are not supported"),
        ("0 6 *", f'schedule "0 6 *" has 3 fields; {USE}'),
        ("", f'schedule "" has 0 fields; {USE}'),
        ("@reboot", 'schedule "@reboot" is not supported: use @hourly, @daily'),
        (
            "0 0 31 2 *",
            'schedule "0 0 31 2 *" never fires: day-of-month 31 does not occur in month 2',
        ),
        ("0 0 31 4,6 *", "day-of-month 31 does not occur in month 4,6"),
    ],
)
def test_invalid_schedules_say_what_and_where(expr, message):
    with pytest.raises(ValueError) as excinfo:
        parse_schedule(expr)
    assert message in str(excinfo.value)
    assert "\n" not in str(excinfo.value)


def test_month_ends_skip_short_months():
    got = times("0 0 31 * *", UTC, at(UTC, 2025, 1, 1), at(UTC, 2026, 1, 1))
    assert [t.month for t in got] == [1, 3, 5, 7, 8, 10, 12]


def test_leap_day_fires_only_in_leap_years():
    got = times("0 0 29 2 *", BERLIN, at(UTC, 2023, 1, 1), at(UTC, 2033, 1, 1))
    assert iso(got) == [
        "2024-02-29T00:00:00+01:00",
        "2028-02-29T00:00:00+01:00",
        "2032-02-29T00:00:00+01:00",
    ]


# --- time zones --------------------------------------------------------------


def test_parse_zone_accepts_iana_names():
    assert parse_zone("Europe/Berlin") == BERLIN
    assert parse_zone("UTC").key == "UTC"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "Europe/Berln",
            (
                'unknown time zone "Europe/Berln": did you mean "Europe/Berlin"? '
                "use an IANA name such as Europe/Berlin or UTC"
            ),
        ),
        ("europe/berlin", 'did you mean "Europe/Berlin"?'),
        ("Mars/Olympus", 'unknown time zone "Mars/Olympus": use an IANA name such as'),
        ("localtime", 'unknown time zone "localtime"'),
        ("", 'unknown time zone ""'),
        ("/etc/localtime", 'unknown time zone "/etc/localtime"'),
        ("../../etc/passwd", "use an IANA name such as Europe/Berlin or UTC"),
    ],
)
def test_unknown_zones_are_refused_with_a_suggestion(name, message):
    with pytest.raises(ValueError) as excinfo:
        parse_zone(name)
    assert message in str(excinfo.value)


def tzfile_bytes(key):
    try:
        return importlib.resources.files("tzdata").joinpath("zoneinfo", key).read_bytes()
    except ModuleNotFoundError:
        for root in zoneinfo.TZPATH:
            if os.path.isfile(os.path.join(root, key)):
                with open(os.path.join(root, key), "rb") as f:
                    return f.read()
    pytest.skip(f"no tzfile for {key}")


def test_host_zone_prefers_tz_then_localtime_then_utc(tmp_path):
    named = tmp_path / "zoneinfo" / "America" / "New_York"
    named.parent.mkdir(parents=True)
    named.write_bytes(tzfile_bytes("America/New_York"))
    link = tmp_path / "localtime"
    link.symlink_to(named)
    anonymous = tmp_path / "tzfile"
    anonymous.write_bytes(tzfile_bytes("Europe/Berlin"))

    assert host_zone({"TZ": "Europe/Berlin"}, str(link)) == BERLIN
    assert host_zone({"TZ": ":Europe/Berlin"}, str(link)) == BERLIN
    # A TZ this module cannot read falls through to /etc/localtime, named by its target.
    assert host_zone({"TZ": "CET-1CEST,M3.5.0,M10.5.0/3"}, str(link)) == NEW_YORK
    assert host_zone({}, str(link)) == NEW_YORK
    assert host_zone({"TZ": str(link)}, "/nonexistent") == NEW_YORK
    loose = host_zone({}, str(anonymous))
    assert loose.utcoffset(datetime(2025, 7, 1)) == timedelta(hours=2)
    assert host_zone({}, str(tmp_path / "missing")) is UTC


# --- DST ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "expr", "after", "expected"),
    [
        # Spring forward: 02:00-02:59 does not exist; the skipped time fires once at 03:00.
        (
            BERLIN,
            "30 2 * * *",
            (2025, 3, 29, 12),
            ["2025-03-30T03:00:00+02:00", "2025-03-31T02:30:00+02:00"],
        ),
        (
            BERLIN,
            "*/15 2 * * *",
            (2025, 3, 29, 12),
            ["2025-03-30T03:00:00+02:00", "2025-03-31T02:00:00+02:00"],
        ),
        (
            NEW_YORK,
            "30 2 * * *",
            (2025, 3, 8, 12),
            ["2025-03-09T03:00:00-04:00", "2025-03-10T02:30:00-04:00"],
        ),
        (
            LORD_HOWE,
            "15 2 * * *",
            (2025, 10, 4, 12),
            ["2025-10-05T02:30:00+11:00", "2025-10-06T02:15:00+11:00"],
        ),
        # Fall back: the repeated time fires once, at its first occurrence.
        (
            BERLIN,
            "30 2 * * *",
            (2025, 10, 25, 12),
            ["2025-10-26T02:30:00+02:00", "2025-10-27T02:30:00+01:00"],
        ),
        (
            NEW_YORK,
            "30 1 * * *",
            (2025, 11, 1, 12),
            ["2025-11-02T01:30:00-04:00", "2025-11-03T01:30:00-05:00"],
        ),
        (
            LORD_HOWE,
            "45 1 * * *",
            (2025, 4, 5, 12),
            ["2025-04-06T01:45:00+11:00", "2025-04-07T01:45:00+10:30"],
        ),
    ],
)
def test_dst_times_fire_once(zone, expr, after, expected):
    assert iso(next_fires(expr, zone, at(zone, *after), len(expected))) == expected


@pytest.mark.parametrize(
    ("zone", "window", "expected"),
    [
        # Spring forward keeps one fire per real hour: 01:00+01 and 03:00+02 are an hour apart.
        (
            BERLIN,
            ((2025, 3, 30, 0, 30), (2025, 3, 30, 4, 30)),
            ["01:00:00+01:00", "03:00:00+02:00", "04:00:00+02:00"],
        ),
        (
            NEW_YORK,
            ((2025, 3, 9, 0, 30), (2025, 3, 9, 4, 30)),
            ["01:00:00-05:00", "03:00:00-04:00", "04:00:00-04:00"],
        ),
        # Fall back: the repeated hour fires once, leaving two real hours between fires.
        (
            BERLIN,
            ((2025, 10, 26, 0, 30), (2025, 10, 26, 4, 30)),
            ["01:00:00+02:00", "02:00:00+02:00", "03:00:00+01:00", "04:00:00+01:00"],
        ),
        (
            NEW_YORK,
            ((2025, 11, 2, 0, 30), (2025, 11, 2, 3, 30)),
            ["01:00:00-04:00", "02:00:00-05:00", "03:00:00-05:00"],
        ),
    ],
)
def test_hourly_across_transitions(zone, window, expected):
    after, until = at(zone, *window[0]), at(zone, *window[1])
    got = times("0 * * * *", zone, after, until)
    assert [t.isoformat()[11:] for t in got] == expected
    assert iso(decide("0 * * * *", zone, None, after, until, "all").fire) == iso(got)


def test_repeated_hour_is_silent_when_the_window_starts_inside_it():
    # 02:10 in the second pass of 02:00-02:59 (CET): 02:15..02:45 already fired in CEST.
    inside = at(BERLIN, 2025, 10, 26, 2, 10, fold=1)
    got = times("*/15 * * * *", BERLIN, inside, at(BERLIN, 2025, 10, 26, 3, 30))
    assert iso(got) == [
        "2025-10-26T03:00:00+01:00",
        "2025-10-26T03:15:00+01:00",
        "2025-10-26T03:30:00+01:00",
    ]
    # ...and a window ending inside it still sees the whole first pass.
    got = times("*/15 * * * *", BERLIN, at(BERLIN, 2025, 10, 26, 1, 50), inside)
    assert [t.isoformat()[11:] for t in got] == [
        "02:00:00+02:00",
        "02:15:00+02:00",
        "02:30:00+02:00",
        "02:45:00+02:00",
    ]
    d = decide("*/15 * * * *", BERLIN, None, at(BERLIN, 2025, 10, 26, 1, 50), inside, "all")
    assert d.fire == got


def test_fall_back_does_not_refire_after_the_first_occurrence():
    first = at(BERLIN, 2025, 10, 26, 2, 30)
    second = at(BERLIN, 2025, 10, 26, 2, 31, fold=1)  # an hour later
    d = decide("30 2 * * *", BERLIN, first, first, second, "latest")
    assert d == Decision([], [], 0, None)


# --- scheduled_times ---------------------------------------------------------


def test_window_is_open_at_after_and_closed_at_until():
    got = times("0 * * * *", UTC, at(UTC, 2025, 1, 1, 1), at(UTC, 2025, 1, 1, 3))
    assert iso(got) == ["2025-01-01T02:00:00+00:00", "2025-01-01T03:00:00+00:00"]


def test_limit_cuts_and_says_so():
    after, until = at(UTC, 2025, 1, 1), at(UTC, 2025, 1, 1, 3)
    result = scheduled_times("0 * * * *", UTC, after, until, 2)
    assert iso(result.times) == ["2025-01-01T01:00:00+00:00", "2025-01-01T02:00:00+00:00"]
    assert result.cut
    assert not scheduled_times("0 * * * *", UTC, after, until, 3).cut


def test_results_are_in_the_zone_whatever_the_arguments_are_in():
    # until is midnight in New York, which is 06:00 in Berlin: included.
    got = times("0 6 * * *", BERLIN, at(UTC, 2025, 7, 1), at(NEW_YORK, 2025, 7, 2))
    assert iso(got) == ["2025-07-01T06:00:00+02:00", "2025-07-02T06:00:00+02:00"]
    assert got[0].tzinfo is BERLIN


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="has no time zone"):
        scheduled_times("0 6 * * *", BERLIN, datetime(2025, 1, 1), at(UTC, 2025, 1, 2), 5)
    with pytest.raises(ValueError, match="now 2025-01-02T00:00:00 has no time zone"):
        decide("0 6 * * *", BERLIN, None, at(UTC, 2025, 1, 1), datetime(2025, 1, 2), "all")


def test_host_tz_does_not_leak_into_results(monkeypatch):
    expected = next_fires("30 2 * * *", BERLIN, at(BERLIN, 2025, 3, 29), 3)
    monkeypatch.setenv("TZ", "Pacific/Chatham")
    time.tzset()
    try:
        assert next_fires("30 2 * * *", BERLIN, at(BERLIN, 2025, 3, 29), 3) == expected
    finally:
        monkeypatch.undo()
        time.tzset()


# --- decide ------------------------------------------------------------------

HOURLY = "0 * * * *"
CREATED = at(UTC, 2025, 1, 1)
DOWN = at(UTC, 2025, 1, 1, 5, 0, 20)  # five hourly times due: 01:00 .. 05:00


def hours(*values):
    return [at(UTC, 2025, 1, 1, h) for h in values]


def test_latest_fires_the_most_recent_and_skips_the_rest():
    d = decide(HOURLY, UTC, None, CREATED, DOWN, "latest")
    assert d == Decision(hours(5), hours(1, 2, 3, 4), 0, at(UTC, 2025, 1, 1, 5))


def test_all_fires_every_due_time_oldest_first():
    d = decide(HOURLY, UTC, None, CREATED, DOWN, CatchUp.ALL)
    assert d == Decision(hours(1, 2, 3, 4, 5), [], 0, at(UTC, 2025, 1, 1, 5))


def test_all_is_capped_keeping_the_most_recent():
    d = decide(HOURLY, UTC, None, CREATED, DOWN, "all", cap=2)
    assert d.fire == hours(4, 5)
    assert d.skipped == hours(2, 3)
    assert d.truncated == 1
    assert d.new_last_fired_for == at(UTC, 2025, 1, 1, 5)


def test_default_cap_is_max_catch_up():
    now = CREATED + timedelta(hours=MAX_CATCH_UP * 2 + 50, seconds=5)
    d = decide(HOURLY, UTC, None, CREATED, now, "all")
    assert len(d.fire) == MAX_CATCH_UP == 100
    assert len(d.skipped) == MAX_CATCH_UP
    assert d.truncated == 50
    assert d.fire[-1] == d.new_last_fired_for == now.replace(second=0)
    assert d.skipped[-1] == d.fire[0] - timedelta(hours=1)


def test_latest_lists_at_most_cap_skipped_and_counts_the_rest():
    d = decide(HOURLY, UTC, None, CREATED, DOWN, "latest", cap=3)
    assert d.fire == hours(5)
    assert d.skipped == hours(2, 3, 4)
    assert d.truncated == 1


def test_truncated_stops_counting_at_max_counted():
    d = decide("* * * * *", UTC, None, CREATED, CREATED + timedelta(days=30), "latest", cap=1)
    assert (len(d.fire), len(d.skipped), d.truncated) == (1, 1, MAX_COUNTED)


@pytest.mark.parametrize(
    ("late", "fires"),
    [(timedelta(0), True), (DEFAULT_GRACE, True), (DEFAULT_GRACE + timedelta(seconds=1), False)],
)
def test_skip_fires_only_an_on_time_latest(late, fires):
    now = at(UTC, 2025, 1, 1, 5) + late
    d = decide(HOURLY, UTC, None, CREATED, now, "skip")
    assert d.fire == (hours(5) if fires else [])
    assert d.skipped == (hours(1, 2, 3, 4) if fires else hours(1, 2, 3, 4, 5))
    assert d.new_last_fired_for == at(UTC, 2025, 1, 1, 5)


def test_skip_grace_is_a_parameter_and_defaults_to_three_ticks():
    assert timedelta(seconds=90) == DEFAULT_GRACE
    now = at(UTC, 2025, 1, 1, 5, 0, 31)
    assert decide(HOURLY, UTC, None, CREATED, now, "skip", grace=timedelta(seconds=30)).fire == []


def test_skip_lists_at_most_cap_skipped():
    d = decide(HOURLY, UTC, None, CREATED, at(UTC, 2025, 1, 1, 5, 30), "skip", cap=2)
    assert (d.fire, d.skipped, d.truncated) == ([], hours(4, 5), 3)


def test_last_fired_for_wins_over_created_at_and_is_exclusive():
    d = decide(HOURLY, UTC, at(UTC, 2025, 1, 1, 3), CREATED, DOWN, "all")
    assert d.fire == hours(4, 5)


def test_created_at_is_exclusive_and_now_inclusive():
    d = decide(HOURLY, UTC, None, at(UTC, 2025, 1, 1, 1), at(UTC, 2025, 1, 1, 2), "all")
    assert d.fire == hours(2)


@pytest.mark.parametrize("now", [at(UTC, 2025, 1, 1, 0, 59), at(UTC, 2024, 12, 31)])
def test_nothing_due_means_no_new_last_fired_for(now):
    # Also a clock set back before last_fired_for: nothing fires until it passes again.
    assert decide(HOURLY, UTC, None, CREATED, now, "latest") == Decision([], [], 0, None)


def test_bad_catch_up_and_cap_are_refused():
    with pytest.raises(ValueError, match='catch_up "newest" is not one of latest, all, skip'):
        decide(HOURLY, UTC, None, CREATED, DOWN, "newest")
    with pytest.raises(ValueError, match="cap must be at least 1"):
        decide(HOURLY, UTC, None, CREATED, DOWN, "all", cap=0)
    with pytest.raises(ValueError, match='schedule "0 25 \\* \\* \\*"'):
        decide("0 25 * * *", UTC, None, CREATED, DOWN, "all")


def test_decide_in_a_dst_zone_across_spring_forward():
    created = at(BERLIN, 2025, 3, 29, 12)
    d = decide("30 2 * * *", BERLIN, None, created, at(BERLIN, 2025, 3, 31, 12), "all")
    assert iso(d.fire) == ["2025-03-30T03:00:00+02:00", "2025-03-31T02:30:00+02:00"]


# --- kickoff ids -------------------------------------------------------------


def test_kickoff_id_is_utc_minutes():
    assert kickoff_id("weekly-report", at(BERLIN, 2025, 1, 6, 6)) == "weekly-report-20250106T0500Z"
    assert kickoff_id("a.b_c", at(UTC, 2025, 7, 1, 23, 59)) == "a.b_c-20250701T2359Z"


def test_kickoff_ids_are_unique_across_the_fall_back_night():
    for zone, day in ((BERLIN, (2025, 10, 26)), (NEW_YORK, (2025, 11, 2))):
        start = at(zone, *day).astimezone(UTC)
        got = times("* * * * *", zone, start, start + timedelta(hours=5), limit=10_000)
        assert len(got) == 4 * 60  # five real hours, one repeated hour silent
        ids = {kickoff_id("c", t) for t in got}
        assert len(ids) == len(got)
        # The two readings of the repeated wall-clock time are distinct instants and ids.
        first, second = (at(zone, *day, 1 if zone is NEW_YORK else 2, 30, fold=f) for f in (0, 1))
        assert kickoff_id("c", first) != kickoff_id("c", second)


def test_kickoff_id_keeps_seconds_of_odd_historic_offsets():
    monrovia = ZoneInfo("Africa/Monrovia")  # UTC-0:44:30 until 1972
    (noon,) = next_fires("0 12 * * *", monrovia, at(monrovia, 1960, 1, 1), 1)
    assert kickoff_id("c", noon) == "c-19600101T124430Z"


@pytest.mark.parametrize("cron_id", ["", ".hidden", "-opt", "a b", "a/b", "ä"])
def test_kickoff_id_refuses_bad_cron_ids(cron_id):
    with pytest.raises(ValueError, match="must start with a letter, digit or _"):
        kickoff_id(cron_id, at(UTC, 2025, 1, 1))


# --- properties --------------------------------------------------------------

SCHEDULES = [
    "30 2 * * *",
    "0 * * * *",
    "*/7 1-3 * * *",
    "15 2 * 3,4,10,11 0",
    "*/20 * * * *",
    "0 0 31 * *",
    "0 0 29 2 *",
    "@daily",
    "45 1 * * *",
    "0 0 L * *",
    "59/15 * * * *",
]
ZONES = [BERLIN, NEW_YORK, LORD_HOWE, UTC, ZoneInfo("Asia/Kolkata"), ZoneInfo("America/St_Johns")]
TRANSITIONS = [  # spring-forward and fall-back instants, 2025
    at(UTC, 2025, 3, 30, 1),
    at(UTC, 2025, 10, 26, 1),  # Europe
    at(UTC, 2025, 3, 9, 7),
    at(UTC, 2025, 11, 2, 6),  # New York
    at(UTC, 2025, 4, 5, 15),
    at(UTC, 2025, 10, 4, 15, 30),  # Lord Howe
]
instants = st.one_of(
    st.builds(
        lambda t, m: t + timedelta(minutes=m),
        st.sampled_from(TRANSITIONS),
        st.integers(-36 * 60, 36 * 60),
    ),
    st.datetimes(datetime(2024, 1, 1), datetime(2026, 12, 31), timezones=st.just(UTC)),
)
fast = settings(max_examples=150, deadline=None, database=None)


@fast
@given(st.sampled_from(SCHEDULES), st.sampled_from(ZONES), instants, st.integers(0, 4 * 24 * 60))
def test_scheduled_times_are_increasing_unique_and_in_window(expr, zone, after, minutes):
    until = after + timedelta(minutes=minutes)
    got = times(expr, zone, after, until, limit=100_000)
    assert all(after < t <= until and t.tzinfo is zone for t in got)
    utc = [t.astimezone(UTC) for t in got]
    assert utc == sorted(set(utc))
    walls = [t.replace(tzinfo=None) for t in got]  # each wall-clock time at most once
    assert walls == sorted(set(walls))
    assert len({kickoff_id("c", t) for t in got}) == len(got)
    # The backward walk of decide agrees with the forward walk.
    d = decide(expr, zone, None, after, until, "all", cap=100_000)
    assert iso(d.fire) == iso(got) and d.skipped == [] and d.truncated == 0
    assert iso([d.new_last_fired_for] if got else []) == iso(got[-1:])


@fast
@given(
    st.sampled_from(SCHEDULES),
    st.sampled_from(ZONES),
    instants,
    st.lists(st.integers(0, 36 * 60), min_size=1, max_size=8),
    st.sampled_from(list(CatchUp)),
)
def test_ticks_never_fire_an_instant_twice(expr, zone, created, gaps, catch_up):
    cap = 10_000 if catch_up == "all" else 3
    last, now, fired, seen = None, created, [], []
    for gap in gaps:
        now += timedelta(minutes=gap)
        d = decide(expr, zone, last, created, now, catch_up, cap=cap)
        fired += d.fire
        seen += d.skipped + d.fire
        if d.new_last_fired_for is not None:
            assert last is None or d.new_last_fired_for.astimezone(UTC) > last
            last = d.new_last_fired_for.astimezone(UTC)
        again = decide(expr, zone, last, created, now, catch_up, cap=cap)
        assert again == Decision([], [], 0, None)
    utc = [t.astimezone(UTC) for t in fired]
    assert utc == sorted(set(utc))
    everything = [t.astimezone(UTC) for t in times(expr, zone, created, now, limit=100_000)]
    assert {t.astimezone(UTC) for t in seen} <= set(everything)
    if catch_up == "all":
        assert utc == everything
