"""streams/eos.py leans on faust-streaming and aiokafka internals; each one it touches is
checked here, so that an upgrade that moves one fails loudly instead of breaking exactly-once."""

from __future__ import annotations

import inspect
from importlib.metadata import version

import aiokafka.client
import faust.tables.recovery
import faust.transport.consumer
import faust.transport.drivers.aiokafka as faust_aiokafka
import pytest

from agon.streams import eos

PROVEN = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0"}


@pytest.mark.parametrize("package", sorted(PROVEN))
def test_the_installed_release_is_the_one_eos_was_proven_against(package):
    assert version(package) == PROVEN[package], (
        f"streams/eos.py was proven against {package} {PROVEN[package]}; re-run the chaos "
        "tests and the takeover benchmark before moving the pin in pyproject.toml"
    )


def test_recovery_still_polls_with_the_five_second_timeout_that_fix_4_shortens():
    source = "".join(inspect.getsource(faust.tables.recovery).split())
    assert f"awaitasyncio.wait_for(changelog_queue.get(),timeout={eos._FAUST_RECOVERY_IDLE_POLL_S})" in source


def test_the_transaction_manager_hooks_fixes_1_to_3_override_still_exist():
    base = faust.transport.consumer.TransactionManager
    for name in ("send", "commit"):
        ours = inspect.signature(getattr(eos.RoutedTransactionManager, name))
        theirs = inspect.signature(getattr(base, name))
        assert list(ours.parameters)[:5] == list(theirs.parameters)[:5], name
    assert "commit_transactions" in inspect.getsource(faust_aiokafka.Producer)
    assert "_transaction_producers" in inspect.getsource(faust_aiokafka.Producer)


def test_the_aiokafka_metadata_internals_fix_6_uses_still_exist():
    source = inspect.getsource(aiokafka.client.AIOKafkaClient)
    for needed in ("self._topics = set()", "def add_topic", "def force_metadata_update"):
        assert needed in source, needed
