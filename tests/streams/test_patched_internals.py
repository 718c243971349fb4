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

from agon.streams import takeover, transactions

PROVEN = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0"}


@pytest.mark.parametrize("package", sorted(PROVEN))
def test_the_installed_release_is_the_one_eos_was_proven_against(package):
    assert version(package) == PROVEN[package], (
        f"streams/eos.py was proven against {package} {PROVEN[package]}; re-run the chaos "
        "tests and the takeover benchmark before moving the pin in pyproject.toml"
    )


def test_recovery_still_polls_with_the_five_second_timeout_that_fix_4_shortens():
    source = "".join(inspect.getsource(faust.tables.recovery).split())
    assert (
        f"awaitasyncio.wait_for(changelog_queue.get(),timeout={takeover._FAUST_RECOVERY_IDLE_POLL_S})"
        in source
    )


def test_the_transaction_manager_hooks_fixes_1_to_3_override_still_exist():
    base = faust.transport.consumer.TransactionManager
    for name in ("send", "commit"):
        ours = inspect.signature(getattr(transactions.RoutedTransactionManager, name))
        theirs = inspect.signature(getattr(base, name))
        assert list(ours.parameters)[:5] == list(theirs.parameters)[:5], name
    assert "commit_transactions" in inspect.getsource(faust_aiokafka.Producer)
    assert "_transaction_producers" in inspect.getsource(faust_aiokafka.Producer)


def test_the_aiokafka_metadata_internals_fix_6_uses_still_exist():
    source = inspect.getsource(aiokafka.client.AIOKafkaClient)
    for needed in ("self._topics = set()", "def add_topic", "def force_metadata_update"):
        assert needed in source, needed


def test_the_internals_the_hot_path_leans_on_still_exist():
    """streams/latency.py: fixes 2 (faust's per-transaction producers and locks), 3 (the fetch
    wait of the consumer faust creates) and 4 (aiokafka's CONCURRENT_TRANSACTIONS retries)."""
    import aiokafka.consumer.consumer
    import aiokafka.producer.sender as sender

    producer = inspect.getsource(faust_aiokafka.Producer)
    assert "self._trn_locks[transactional_id]" in producer
    assert "transaction_producer.send_offsets_to_transaction(" in producer
    thread = inspect.getsource(faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer)
    assert "fetch_max_wait_ms=1500" in thread
    assert "self._fetch_max_wait_ms = fetch_max_wait_ms" in inspect.getsource(
        aiokafka.consumer.consumer.AIOKafkaConsumer.__init__
    )
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in inspect.getsource(
        aiokafka.consumer.consumer.AIOKafkaConsumer.start
    )
    assert "return BACKOFF_OVERRIDE" in inspect.getsource(sender.AddPartitionsToTxnHandler)
    assert "handler = AddOffsetsToTxnHandler(self, group_id)" in inspect.getsource(sender.Sender)
    from agon.streams.latency import _AddOffsetsToTxnHandler

    original = _AddOffsetsToTxnHandler.__mro__[1]  # sender's own, even once replaced
    add_offsets = inspect.getsource(original.handle_response)
    assert "or error_type is ConcurrentTransactions" in add_offsets


def test_the_offset_bookkeeping_fix_2_of_the_hot_path_replaces_still_exists():
    source = inspect.getsource(faust.transport.consumer.Consumer)
    for needed in ("def _new_offset(self, tp: TP)", "self._acked_index[tp]", "self._gap[tp]"):
        assert needed in source, needed
