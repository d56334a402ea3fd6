"""When a per-holder record expires, said without saying when it was written.

A key's TTL is readable by whoever reads Redis, and "expires 400 days after the last write" gives the time of that
write — a login time, or the moment a consent was given. So every holder record's expiry is rounded up to a
coarse boundary: the first second of a month (the access record, consents) or of a UTC day (pending entries, kept
only a month). The retention promised is then "at least this long, at most one unit longer" (docs/security-and-
privacy.md), and a TTL tells only the month or the day.
"""

from __future__ import annotations

import datetime as dt


def _utc(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("An expiry is computed from a time with its zone.")
    return moment.astimezone(dt.UTC)


def by_day(moment: dt.datetime, retention: dt.timedelta) -> int:
    """Epoch seconds of the first UTC midnight at or after `moment + retention`."""
    end = _utc(moment) + retention
    day = end.replace(hour=0, minute=0, second=0, microsecond=0)
    return int((day if day == end else day + dt.timedelta(days=1)).timestamp())


def by_month(moment: dt.datetime, retention: dt.timedelta) -> int:
    """Epoch seconds of the first day of the month after the one `moment + retention` falls in."""
    end = _utc(moment) + retention
    following = (end.replace(day=1) + dt.timedelta(days=32)).replace(day=1, hour=0, minute=0, second=0,
                                                                       microsecond=0)
    return int(following.timestamp())
