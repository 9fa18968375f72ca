"""Diagnostics levels: OK, WARN and ERROR from a camera's counters, each with the reason in the message."""
from reasonseg.core.settings import DiagnosticsSettings
from reasonseg.runtime.health import ERROR, OK, WARN, HealthRater, StreamSnapshot, frame_latency_ms


def _snap(**kw) -> StreamSnapshot:
    base = dict(frames_in=0, frames_rejected=0, frames_stale=0, frames_processed=0, errors=0, consecutive_errors=0,
                grounding_fallbacks=0, since_last_frame_s=0.1, since_active_s=60.0)
    return StreamSnapshot(**{**base, **kw})


def test_levels_and_reasons():
    rater = HealthRater(DiagnosticsSettings(max_latency_ms=1000, max_drop_share=0.5, error_count=3, no_frame_s=5))
    assert rater.rate(_snap(frames_in=30, frames_stale=10, frames_processed=20), [400, 500]) == (OK, "20 masks")
    level, msg = rater.rate(_snap(frames_in=60, frames_stale=35, frames_processed=25), [1500, 1600, 900])
    assert level == WARN and "median latency 1500 ms > 1000 ms" in msg and "83% of frames dropped" in msg
    level, msg = rater.rate(_snap(frames_in=60, frames_stale=35, frames_processed=25, errors=1,
                                  consecutive_errors=1, grounding_fallbacks=2), [])
    assert level == WARN and "1 new errors" in msg and "2 LLM fallbacks" in msg
    level, msg = rater.rate(_snap(frames_in=60, frames_stale=35, frames_processed=25, errors=4,
                                  consecutive_errors=4, grounding_fallbacks=2), [])
    assert level == ERROR and "4 pipeline errors in a row" in msg
    level, msg = rater.rate(_snap(frames_in=60, frames_stale=35, frames_processed=25, errors=4,
                                  grounding_fallbacks=2, since_last_frame_s=7.5), [])
    assert level == ERROR and "no frame for 7.5 s" in msg
    assert HealthRater(DiagnosticsSettings(no_frame_s=5))\
        .rate(_snap(since_last_frame_s=None, since_active_s=9.0), [])[0] == ERROR  # a camera that never sent


def test_latency_runs_from_arrival_where_the_stamp_is_on_another_clock():
    now = 1_795_000_000 * 10**9
    assert frame_latency_ms(now, now - 80 * 10**6, now - 70 * 10**6) == (80.0, True)  # synced: from the stamp
    assert frame_latency_ms(now, now - 9 * 10**9, now - 1 * 10**9) == (9000.0, True)   # late, but on this clock
    for stamp in (0, now - 3600 * 10**9, now + 50 * 10**9):  # unstamped; an hour off; a clock ahead
        assert frame_latency_ms(now, stamp, now - 120 * 10**6) == (120.0, False)
