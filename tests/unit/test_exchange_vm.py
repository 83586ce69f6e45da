"""The store.exe address-space model: free-list allocator, thresholds, two stores, restart."""

from __future__ import annotations

import pytest

from nodeagent.exchange.vm import (
    ADDRESS_SPACE,
    EVENT_VM_LOW,
    GRANULE,
    MB,
    AddressSpace,
    StoreVm,
    VmMountRefused,
)


def test_allocator_first_fit_and_coalescing() -> None:
    space = AddressSpace()
    a = space.alloc(MB)
    b = space.alloc(MB)
    assert a == GRANULE and b == GRANULE + MB
    space.release(a, MB)
    assert space.alloc(GRANULE) == a  # first fit: the lowest hole
    space.release(a, GRANULE)
    space.release(b, MB)
    assert space.free == [(GRANULE, ADDRESS_SPACE - GRANULE)]  # everything merged back
    at = space.alloc_near(100 * MB + 5, GRANULE)
    assert at == 100 * MB and space.largest() < ADDRESS_SPACE - 100 * MB


def run_until(vm: StoreVm, below: int, limit: int = 100_000) -> tuple[int, list[int]]:
    units, events = 0, []
    while vm.counters().largest_block_bytes >= below:
        assert units < limit, "the address space never fragmented"
        events += vm.activity(100)
        units += 100
    return units, events


def test_fragmentation_raises_9582_once_and_then_failover_mount_fails() -> None:
    vm = StoreVm()
    vm.mount("Mailbox Store")
    fresh = vm.counters()
    assert fresh.largest_block_bytes > 1000 * MB and fresh.free_16mb_blocks >= 1
    _, events = run_until(vm, 32 * MB)
    assert events == [EVENT_VM_LOW]
    run_until(vm, 16 * MB)
    assert vm.activity(0) == []  # still low: no second event
    frag = vm.counters()
    assert frag.free_16mb_blocks == 0 and frag.free_bytes > 1000 * MB  # free, but in pieces
    assert frag.free_blocks > fresh.free_blocks
    with pytest.raises(VmMountRefused, match="16 MB"):
        vm.mount("EVS2 Mailbox Store", failover=True)
    if frag.largest_block_bytes >= 10 * MB:
        vm.mount("Second Store")  # an ordinary mount needs 10 MB only
    run_until(vm, 10 * MB)
    with pytest.raises(VmMountRefused, match="10 MB"):
        vm.mount("Third Store")
    vm.restart()  # a new store.exe
    assert vm.counters() == StoreVm().counters()
    vm.mount("EVS2 Mailbox Store", failover=True)


def test_two_stores_in_one_process_fragment_faster() -> None:
    one, two = StoreVm(), StoreVm()
    one.mount("EVS1 Mailbox Store")
    two.mount("EVS1 Mailbox Store")
    two.mount("EVS2 Mailbox Store")
    assert run_until(two, 32 * MB)[0] < run_until(one, 32 * MB)[0]


def test_the_model_is_deterministic() -> None:
    a, b = StoreVm(), StoreVm()
    for vm in (a, b):
        vm.mount("db")
        vm.activity(2500)
    assert a.counters() == b.counters()
