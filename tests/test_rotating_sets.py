"""core/inputs.replicate and rotating_sets: the timer's thousands of rotating decode sets are
memory copies of a few made from fresh seeds. A copy must be the same input (values, sizes,
strides, offsets, which tensors share memory) in memory of its own."""
import pytest
import torch

from solbench.core import inputs, timing
from solbench.core.spec import all_specs


def _storage(t):
    return t.untyped_storage().data_ptr()


def test_copies_keep_values_layout_and_sharing_in_their_own_memory():
    packed = torch.randn(5, 24)
    base = {"q": packed[:, :8], "k": packed[:, 8:16], "rows": inputs.row_slice(torch.randn(3, 7), 5),
            "empty": torch.empty(0, 16), "eps": 1e-6, "idx": torch.randint(0, 9, (4,), dtype=torch.int64)}
    copies = inputs.replicate(base, 3)
    assert len(copies) == 3
    for c in copies:
        assert c["eps"] == 1e-6
        for key in ("q", "k", "rows", "empty", "idx"):
            assert c[key].dtype == base[key].dtype and c[key].shape == base[key].shape
            assert c[key].stride() == base[key].stride()
            assert torch.equal(c[key], base[key])
        assert _storage(c["q"]) == _storage(c["k"])  # views of one packed buffer stay one buffer
        assert c["q"].data_ptr() != c["k"].data_ptr()
        ptrs = {c["q"].data_ptr(), c["rows"].data_ptr(), c["idx"].data_ptr()}
        assert not ptrs & {t.data_ptr() for t in (base["q"], base["rows"], base["idx"])}
    assert len({c["rows"].data_ptr() for c in copies}) == 3  # every copy in memory of its own
    assert (copies[1]["q"].data_ptr() - copies[0]["q"].data_ptr()) % 512 == 0  # copies start aligned
    copies[0]["q"].add_(1.0)  # writing one copy leaves the others and the base alone
    assert torch.equal(copies[1]["q"], base["q"]) and not torch.equal(copies[0]["q"], base["q"])


def test_tensors_inside_containers_are_not_copied():
    assert inputs.replicate({"xs": [torch.ones(2)], "n": 3}, 2) is None
    assert inputs.replicate({"cfg": {"w": torch.ones(2)}}, 2) is None
    assert inputs.replicate({"sizes": (1, 2), "x": torch.ones(2)}, 2) is not None


def test_rotating_sets_copy_a_few_fresh_ones_in_turn():
    made = []

    def make(i):
        made.append(i)
        return {"x": torch.full((4,), float(i))}

    sets = inputs.rotating_sets(make, 20, distinct=8)
    assert made == list(range(8)) and len(sets) == 20
    assert [float(s["x"][0]) for s in sets] == [i % 8 for i in range(20)]
    assert len({s["x"].data_ptr() for s in sets}) == 20
    assert len(inputs.rotating_sets(make, 3, distinct=8)) == 3


def test_the_timer_copies_sets_and_makes_them_when_it_cannot():
    sets, flush = timing.input_sets(100, False, lambda i: {"x": torch.full((2,), float(i))})
    assert (len(sets), flush) == (100, False) and float(sets[99]["x"][0]) == 99 % timing.DISTINCT_SETS
    made = []
    sets, flush = timing.input_sets(20, False, lambda i: made.append(i) or {"xs": [torch.ones(1)]})
    assert (len(sets), flush) == (20, False) and made[-12:] == list(range(8, 20))


def test_sets_that_hold_much_memory_are_flushed_not_rotated(monkeypatch):
    # A call that moves a few KB of a large cache plans thousands of sets; copies of the whole
    # cache would not fit, so such a plan is flushed (two sets).
    cache = torch.zeros(1 << 20)  # 4 MB held, whatever the call moves
    packed = torch.zeros(4, 8)
    assert inputs.footprint({"cache": cache, "view": cache[:10], "q": packed[:, :4], "k": packed[:, 4:],
                             "xs": [torch.zeros(2)], "eps": 1e-6}) == (1 << 22) + 4 * 8 * 4 + 8
    monkeypatch.setattr(timing, "MAX_SETS_BYTES", 100 * (1 << 22))
    made = []
    sets, flush = timing.input_sets(1000, False, lambda i: made.append(i) or {"cache": torch.zeros(1 << 20)})
    assert (len(sets), flush, made) == (2, True, [0, 1])
    sets, flush = timing.input_sets(50, False, lambda i: {"cache": torch.zeros(1 << 20)})
    assert (len(sets), flush) == (50, False)


@pytest.mark.parametrize("spec", all_specs(include_variants=True), ids=lambda s: s.name)
def test_a_copied_set_is_the_same_input_for_every_operator(spec):
    # Every operator's reference gives the same answer on a copy as on the set it was copied from:
    # aliasing between inputs (packed qkv, caches and their views) survives the copy.
    shape = spec.smoke_shapes()[0]
    base = spec.make_inputs(shape, torch.device("cpu"), 0)
    copies = inputs.replicate(base, 2)
    if copies is None:
        pytest.skip(f"{spec.name}: inputs hold tensors inside containers (each set is made instead)")
    want = spec.normalize_outputs(spec.reference(**spec.make_inputs(shape, torch.device("cpu"), 0)))
    for c in copies:
        got = spec.normalize_outputs(spec.reference(**c))
        assert got.keys() == want.keys()
        for k in want:
            assert torch.equal(got[k], want[k]), (spec.name, k)
