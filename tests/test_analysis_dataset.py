"""The PyTorch iterable dataset over the lake: frames decoded and resized, worker sharding."""

from __future__ import annotations

from collections import Counter

import pytest
from test_analysis import VIDEOS, VIDPROM, build_known_lake

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    return build_known_lake(tmp_path_factory.mktemp("known-ds"), embeddings=False)


def test_samples_have_resized_frames_and_metadata(known):
    from vidprom_lake.dataset import LakeVideoDataset

    ds = LakeVideoDataset(known, num_frames=4, size=(32, 24))
    samples = list(ds)
    assert len(ds) == len(samples) == sum(len(m) for m in VIDEOS.values())
    s = samples[0]
    assert s["frames"].dtype == torch.uint8 and tuple(s["frames"].shape) == (4, 24, 32, 3)
    assert s["frames"].float().std() > 1  # real picture content, not zeros
    assert s["prompt"] in {p for p, _, _ in VIDPROM}
    assert s["meta"]["width"] == 64 and s["meta"]["source"] == "vidprom"
    assert Counter(x["model"] for x in samples) == {"ms": 3, "pika": 2, "vc2": 1, "t2vz": 1}


def test_where_and_prompt_only(known):
    from vidprom_lake.dataset import LakeVideoDataset
    from vidprom_lake.errors import QueryError

    assert {s["model"] for s in LakeVideoDataset(known, where="model = 'pika'")} == {"pika"}
    prompts = list(LakeVideoDataset(known, videos=False, where="source = 'diffusiondb'"))
    assert len(prompts) == 3 and "frames" not in prompts[0]
    with pytest.raises(QueryError, match="nope"):
        LakeVideoDataset(known, where="nope = 1")


@pytest.mark.slow
def test_dataloader_workers_see_every_row_once(known):
    from vidprom_lake.dataset import LakeVideoDataset, collate

    ds = LakeVideoDataset(known, num_frames=2, size=(16, 16), shuffle=True, seed=3)
    # lance is not fork-safe: workers must be spawned (or forkserver)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate,
                                         multiprocessing_context="spawn")
    seen = [v for batch in loader for v in batch["video_id"]]
    assert sorted(seen) == sorted(s["video_id"] for s in LakeVideoDataset(known, num_frames=1, size=(8, 8)))
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=collate)))
    assert tuple(batch["frames"].shape) == (2, 2, 16, 16, 3)


def test_ranks_partition_the_rows(known):
    from vidprom_lake.dataset import LakeVideoDataset, shard_of

    parts = [[s["video_id"] for s in LakeVideoDataset(known, rank=r, world_size=3, num_frames=1,
                                                       size=(8, 8))] for r in range(3)]
    flat = [v for p in parts for v in p]
    assert len(flat) == len(set(flat)) == 7
    assert [len(p) for p in parts] == [3, 2, 2]
    assert list(shard_of(10, 1, 2, rank=1, world=2)) == [3, 7]


def test_shuffle_depends_on_epoch(known):
    from vidprom_lake.dataset import LakeVideoDataset

    ds = LakeVideoDataset(known, videos=False, shuffle=True, seed=1)
    a = [s["uuid"] for s in ds]
    assert a == [s["uuid"] for s in ds]
    ds.set_epoch(1)
    b = [s["uuid"] for s in ds]
    assert sorted(a) == sorted(b) and a != b
