"""The scheduler's queue: a free slot keeps its model, models spread over slots (each loads once), call units
wait for their inputs, a retried unit runs first — at a cost independent of the number of units."""

from __future__ import annotations

from types import SimpleNamespace

from matteralign.execute import CallUnit, ExtractUnit, Ref
from matteralign.execute.executors import _Queue


def _units(models, shards):
    return [ExtractUnit(dataset="d", model=m, layers=("h",), shard=k, samples=[]) for m in models for k in range(shards)]


def _slot(unit):
    return SimpleNamespace(model_key=unit.model_key, env=unit.env)


def _always(*_a):
    return True


def test_two_slots_take_two_models_and_keep_them():
    q = _Queue(_units(["a", "b", "c"], 3))
    first = q.pick(None, set(), _always, _always)
    s0 = _slot(first)
    second = q.pick(None, {s0.model_key}, _always, _always)
    s1 = _slot(second)
    assert (first.model, second.model) == ("a", "b")  # not both on model a
    taken = [q.pick(s0, {s1.model_key}, _always, _always) for _ in range(2)]
    assert [(u.model, u.shard) for u in taken] == [("a", 1), ("a", 2)]
    # a's queue is empty: slot 0 moves to the model nobody holds, not to b
    assert q.pick(s0, {s1.model_key}, _always, _always).model == "c"


def test_a_slot_shares_the_largest_model_when_every_model_is_held():
    q = _Queue(_units(["a"], 2) + _units(["b"], 5))
    a, b = q.pick(None, set(), _always, _always), q.pick(None, set(), _always, _always)
    assert a.model == "a"
    held = {_slot(a).model_key, _slot(b).model_key}
    third = q.pick(SimpleNamespace(model_key="other", env=None), held, _always, _always)
    assert third.model == "b"  # 4 left of b vs 1 of a


def test_call_units_wait_for_their_refs_and_a_retry_goes_first():
    cache = CallUnit(key=("cache", "a"), fn="m:f", share=True)
    block = CallUnit(key=("block",), fn="m:g", args=(Ref(("cache", "a")),))
    kept = set()

    def ready(u):
        return all(x.key in kept for x in u.args if isinstance(x, Ref))

    q = _Queue([block, cache])
    assert q.pick(None, set(), ready, _always) is cache
    assert q.pick(None, set(), ready, _always) is None and q  # the block waits
    kept.add(("cache", "a"))
    assert q.pick(None, set(), ready, _always) is block and not q
    units = _units(["a"], 3)
    q = _Queue(units)
    u0 = q.pick(None, set(), _always, _always)
    q.put_back(u0)
    assert q.pick(_slot(u0), set(), _always, _always) is u0


def test_picking_does_not_scan_every_unit():
    """30,000 shards of 60 models: each pick looks at one queue head, not at every waiting unit."""
    q = _Queue(_units([f"m{i}" for i in range(60)], 500))
    looked = []

    def can_host(_slot, unit):
        looked.append(unit)
        return True

    slots = [None, None]
    n = 0
    while q:
        i = n % 2
        held = {s.model_key for j, s in enumerate(slots) if s is not None and j != i}
        u = q.pick(slots[i], held, _always, can_host)
        slots[i] = _slot(u)
        n += 1
    assert n == 30_000
    assert len(looked) <= n  # at most the head of the slot's own queue per pick
