import pytest

from pipeline.chunks import chunk_for_range, plan_chunks


def test_chunks_cover_the_range_once_and_warm_up_inside_it():
    chunks = plan_chunks(10, 40, size=12, overlap=4)
    assert [(c.first, c.last, c.warmup) for c in chunks] == [(10, 22, 0), (22, 34, 4), (34, 40, 4)]
    own = [i for c in chunks for i in range(c.first, c.last)]
    assert own == list(range(10, 40))
    assert all(c.begin >= 10 for c in chunks)
    assert plan_chunks(0, 5, size=3, overlap=8)[1].warmup == 3  # never before the range
    with pytest.raises(ValueError):
        plan_chunks(0, 5, size=0, overlap=1)


def test_a_farm_range_is_the_same_chunk_ray_would_plan():
    assert chunk_for_range(10, 22, 34, 4) == plan_chunks(10, 40, 12, 4)[1]
