"""Supervisor policy: OTP restart decisions and the restart-intensity window."""

from __future__ import annotations

import pytest

from callboard.supervisors._policy import EXIT_REASONS, RestartIntensity, should_restart


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- should_restart ----------------------------------------------------------------------

EXPECTED = {
    ("permanent", "normal"): True,
    ("permanent", "shutdown"): True,
    ("permanent", "killed"): True,
    ("permanent", "error"): True,
    ("permanent", "timeout"): True,
    ("transient", "normal"): False,
    ("transient", "shutdown"): False,
    ("transient", "killed"): True,
    ("transient", "error"): True,
    ("transient", "timeout"): True,
    ("temporary", "normal"): False,
    ("temporary", "shutdown"): False,
    ("temporary", "killed"): False,
    ("temporary", "error"): False,
    ("temporary", "timeout"): False,
}


def test_matrix_covers_every_exit_reason() -> None:
    assert set(EXIT_REASONS) == {"normal", "shutdown", "killed", "error", "timeout"}
    assert {reason for _, reason in EXPECTED} == set(EXIT_REASONS)


@pytest.mark.parametrize(("restart", "reason"), sorted(EXPECTED))
def test_should_restart(restart: str, reason: str) -> None:
    assert should_restart(restart, reason) is EXPECTED[(restart, reason)]


@pytest.mark.parametrize("restart", ["", "always", "Permanent", "never"])
def test_invalid_restart_type(restart: str) -> None:
    with pytest.raises(ValueError, match="invalid_restart_type"):
        should_restart(restart, "error")


# --- RestartIntensity --------------------------------------------------------------------


def test_allows_intensity_then_refuses_within_period() -> None:
    clock = FakeClock()
    window = RestartIntensity(3, 5.0, clock=clock)
    assert window.intensity == 3
    assert window.period == 5.0
    results: list[bool] = []
    for _ in range(3):
        results.append(window.record())
        clock.now += 1.0
    assert results == [True, True, True]
    clock.now = 100.0 + 4.9  # fourth restart, still within 5 s of the first
    assert window.record() is False


def test_burst_at_one_instant() -> None:
    window = RestartIntensity(3, 5.0, clock=FakeClock())
    assert [window.record() for _ in range(5)] == [True, True, True, False, False]


def test_spaced_restarts_pass() -> None:
    clock = FakeClock()
    window = RestartIntensity(3, 5.0, clock=clock)
    for _ in range(20):
        assert window.record() is True
        clock.now += 2.0  # at most 3 restarts in any 5 s window


def test_window_slides() -> None:
    clock = FakeClock(0.0)
    window = RestartIntensity(3, 5.0, clock=clock)
    for t in (0.0, 1.0, 2.0):
        clock.now = t
        assert window.record() is True
    clock.now = 5.5  # the restart at 0.0 has left the window: 1.0, 2.0, 5.5
    assert window.record() is True
    clock.now = 5.9  # 1.0, 2.0, 5.5, 5.9: four within 5 s
    assert window.record() is False
    clock.now = 20.0  # everything old has left the window
    assert window.record() is True
    assert window.recent == 1


def test_intensity_zero_refuses_first_restart() -> None:
    window = RestartIntensity(0, 5.0, clock=FakeClock())
    assert window.record() is False


def test_intensity_one() -> None:
    clock = FakeClock()
    window = RestartIntensity(1, 1.0, clock=clock)
    assert window.record() is True
    clock.now += 0.5
    assert window.record() is False


@pytest.mark.parametrize("intensity", [-1, -10])
def test_invalid_intensity(intensity: int) -> None:
    with pytest.raises(ValueError, match="invalid_intensity"):
        RestartIntensity(intensity, 5.0, clock=FakeClock())


@pytest.mark.parametrize("period", [0, 0.0, -1.0])
def test_invalid_period(period: float) -> None:
    with pytest.raises(ValueError, match="invalid_period"):
        RestartIntensity(3, period, clock=FakeClock())


def test_recent_counts_restarts_in_window() -> None:
    clock = FakeClock(0.0)
    window = RestartIntensity(10, 5.0, clock=clock)
    assert window.recent == 0
    window.record()
    clock.now = 2.0
    window.record()
    window.record()
    assert window.recent == 3
    clock.now = 5.5  # the first restart has aged out; recent does not need a record()
    assert window.recent == 2
    clock.now = 7.5
    assert window.recent == 0


def test_recent_includes_refused_restarts() -> None:
    window = RestartIntensity(1, 5.0, clock=FakeClock())
    assert window.record() is True
    assert window.record() is False
    assert window.recent == 2


def test_a_restart_exactly_period_old_still_counts_as_in_otp() -> None:
    # OTP's add_restart keeps restarts with R >= Now - Period.
    clock = FakeClock()
    window = RestartIntensity(1, 5.0, clock=clock)
    assert window.record()
    clock.now += 5.0
    assert not window.record()  # the first one is exactly 5 s old: still in the window
    fresh = RestartIntensity(1, 5.0, clock=FakeClock())
    assert fresh.record()
    fresh._clock.now += 5.001  # type: ignore[attr-defined]
    assert fresh.record()  # just past the window: allowed again
