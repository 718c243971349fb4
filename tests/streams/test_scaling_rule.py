"""The autoscaling rule: KEDA's Kafka scaler formula, and the scale-in stabilization window."""

from __future__ import annotations

import pytest

from agon.settings import AutoscaleSettings
from agon.streams.autoscale import Scaler, keda_desired


@pytest.mark.parametrize(
    ("lag", "partitions", "expected"),
    [
        (0, 4, 1),  # never below minReplicaCount
        (1, 4, 1),
        (10, 4, 1),
        (11, 4, 2),  # ceil(11 / 10)
        (35, 4, 4),
        (1000, 4, 4),  # never more workers than partitions: the extra ones would idle
        (1000, 12, 8),  # nor more than maxReplicaCount
    ],
)
def test_the_rule_is_kedas(lag, partitions, expected):
    policy = AutoscaleSettings(lag_threshold=10, min_replica_count=1, max_replica_count=8)
    assert keda_desired(lag, partitions, policy) == expected


def test_without_a_maximum_the_partitions_bound_the_count():
    assert keda_desired(10**6, 6, AutoscaleSettings(lag_threshold=1)) == 6


def test_scale_out_is_immediate_and_scale_in_waits_for_the_window():
    scaler = Scaler(AutoscaleSettings(lag_threshold=10, scale_down_stabilization_s=30))
    assert scaler.decide("team-a", 35, 4, current=1, now=0).target == 4
    assert scaler.decide("team-a", 0, 4, current=4, now=10).target == 4  # 4 was wanted 10 s ago
    assert scaler.decide("team-a", 15, 4, current=4, now=20).target == 4
    # 30 s after the last 4 the window holds only the 15's recommendation (2) and zeros
    d = scaler.decide("team-a", 0, 4, current=4, now=31)
    assert (d.recommended, d.target, d.direction) == (1, 2, "in")
    assert scaler.decide("team-a", 0, 4, current=2, now=51).target == 1


def test_a_dip_of_one_poll_does_not_flap():
    scaler = Scaler(AutoscaleSettings(lag_threshold=10, scale_down_stabilization_s=5))
    targets = []
    current = 1
    for t, lag in enumerate([40, 40, 0, 40, 0, 40, 40, 0]):
        current = scaler.decide("team-b", lag, 4, current, now=float(t)).target
        targets.append(current)
    assert targets == [4] * 8


def test_agents_are_scaled_apart():
    scaler = Scaler(AutoscaleSettings(lag_threshold=10, scale_down_stabilization_s=30))
    scaler.decide("team-a", 40, 4, 1, now=0)
    assert scaler.decide("team-b", 0, 4, 3, now=1).target == 3  # its own window: nothing yet
    assert scaler.decide("team-b", 0, 4, 3, now=40).target == 1


def test_an_agent_whose_workers_are_starting_or_stopping_is_not_scaled_in():
    scaler = Scaler(AutoscaleSettings(lag_threshold=10, scale_down_stabilization_s=0))
    assert scaler.decide("team-a", 0, 4, current=3, now=0, settled=False).target == 3
    assert scaler.decide("team-a", 35, 4, current=3, now=1, settled=False).target == 4  # out: at once
    assert scaler.decide("team-a", 0, 4, current=4, now=2, settled=True).target == 1
