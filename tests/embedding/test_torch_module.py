"""The torch module trains exactly like torch.nn.EmbeddingBag + torch.optim.Adagrad on ids that
fit a dense table, while touching only the rows a batch uses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tiktok_pipelines.embedding import AdagradConfig, CountFilter, TableConfig
from tiktok_pipelines.embedding.torch_module import (
    MonolithEmbeddings,
    SlotSpec,
    default_slots,
    train_step,
)

NUM_IDS = 50
DIM = 8


def _batches(seed: int, n_batches: int, batch: int):
    """Bags of 1-4 ids from a skewed distribution, so rows repeat within and across batches."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_batches):
        lengths = rng.integers(1, 5, size=batch)
        ids = np.minimum(rng.zipf(1.3, size=lengths.sum()) - 1, NUM_IDS - 1).astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        users = rng.integers(0, NUM_IDS, size=batch).astype(np.int64)
        targets = rng.normal(size=(batch, DIM)).astype(np.float32)
        out.append((torch.from_numpy(ids), torch.from_numpy(offsets), torch.from_numpy(users), torch.from_numpy(targets)))
    return out


def _loss(pooled_tags: torch.Tensor, pooled_users: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return ((pooled_tags * pooled_users - targets) ** 2).mean() + pooled_tags.sum() * 0.1


@pytest.mark.parametrize("mode", ["mean", "sum"])
def test_matches_embedding_bag_and_adagrad(mode: str) -> None:
    adagrad = AdagradConfig(lr=0.3, eps=1e-10, initial_accumulator_value=0.1)
    cfg = TableConfig(dim=DIM, init_scale=0.5, seed=7, adagrad=adagrad)
    ours = MonolithEmbeddings({"tags": SlotSpec(cfg, pooling=mode), "user": SlotSpec(cfg)})
    tables = ours.tables

    # Reference: dense tables holding the same initial vectors as our rows will start from.
    all_ids = np.arange(NUM_IDS, dtype=np.int64)
    ref_tags = nn.EmbeddingBag(NUM_IDS, DIM, mode=mode)
    ref_user = nn.Embedding(NUM_IDS, DIM)
    with torch.no_grad():
        ref_tags.weight.copy_(torch.from_numpy(tables["tags"].initial_embeddings(all_ids)))
        ref_user.weight.copy_(torch.from_numpy(tables["user"].initial_embeddings(all_ids)))
    ref_opt = torch.optim.Adagrad([ref_tags.weight, ref_user.weight], lr=adagrad.lr, eps=adagrad.eps,
                                  initial_accumulator_value=adagrad.initial_accumulator_value)

    for step, (tag_ids, offsets, users, targets) in enumerate(_batches(0, 6, 32)):
        ref_opt.zero_grad()
        ref_loss = _loss(ref_tags(tag_ids, offsets), ref_user(users), targets)
        ref_loss.backward()
        ref_opt.step()

        loss = train_step(ours, lambda p, t=targets: _loss(p["tags"], p["user"], t),
                          {"tags": tag_ids, "user": users}, offsets={"tags": offsets}, now_s=1000 + step)
        assert loss == pytest.approx(ref_loss.item(), rel=1e-6)

    for name, ref in (("tags", ref_tags), ("user", ref_user)):
        table = tables[name]
        seen = table.storage.row_ids[table.live_rows()]
        assert seen.size > 10
        got = table.embeddings_for(seen)
        want = ref.weight.detach().numpy()[seen]
        # torch's own kernels on the same values in the same order: equal to the bit.
        np.testing.assert_array_equal(got, want)
        state = ref_opt.state[ref.weight]["sum"].numpy()[seen]
        np.testing.assert_array_equal(table.storage.accumulators[table.lookup(seen)], state)
        # Rows never used have no row at all (sparse), and the reference never moved them.
        unseen = np.setdiff1d(all_ids, seen)
        assert np.all(table.lookup(unseen) == -1)
        np.testing.assert_array_equal(ref.weight.detach().numpy()[unseen], table.initial_embeddings(unseen))


def test_sparse_adagrad_touches_only_batch_rows() -> None:
    """A step changes exactly the rows of the batch; other rows keep value and timestamp."""
    emb = MonolithEmbeddings({"x": SlotSpec(TableConfig(dim=4, init_scale=0.5))})
    emb({"x": torch.arange(100)}, now_s=0)["x"].sum().backward()
    emb.apply_gradients(now_s=0)
    table = emb.tables["x"]
    before = table.embeddings_for(np.arange(100))
    batch = np.array([3, 50, 50, 99])
    emb({"x": torch.from_numpy(batch)}, now_s=7)["x"].pow(2).sum().backward()
    emb.apply_gradients(now_s=7)
    after = table.embeddings_for(np.arange(100))
    changed = np.flatnonzero(np.any(after != before, axis=1))
    np.testing.assert_array_equal(changed, np.unique(batch))
    times = table.storage.last_update_s[table.lookup(np.arange(100))]
    np.testing.assert_array_equal(np.flatnonzero(times == 7), np.unique(batch))


def test_numba_adagrad_matches_torch_formula() -> None:
    """The table's own (numba) Adagrad: accumulators equal torch's to the bit (same fused
    multiply-add); parameters within rounding of the update (torch's float32 sqrt is not
    correctly rounded, ours is)."""
    from tiktok_pipelines.embedding import CollisionlessEmbeddingTable

    cfg = TableConfig(dim=DIM, init_scale=0.5, adagrad=AdagradConfig(lr=0.3, initial_accumulator_value=0.1))
    table = CollisionlessEmbeddingTable(cfg)
    ids = np.arange(40)
    rows = table.lookup_or_insert(ids, now_s=0)
    weight = nn.Parameter(torch.from_numpy(table.initial_embeddings(ids)))
    opt = torch.optim.Adagrad([weight], lr=0.3, initial_accumulator_value=0.1)
    grads = torch.from_numpy(np.random.default_rng(0).normal(size=(40, DIM)).astype(np.float32))
    weight.grad = grads.clone()
    opt.step()
    table.apply_adagrad(rows, grads.numpy(), now_s=1)
    np.testing.assert_array_equal(table.storage.accumulators[rows], opt.state[weight]["sum"].numpy())
    np.testing.assert_allclose(table.gather(rows), weight.detach().numpy(), rtol=1e-6, atol=1e-7)
    assert not np.array_equal(table.gather(rows), table.initial_embeddings(ids))
    assert np.all(table.storage.last_update_s[rows] == 1)


def test_unadmitted_ids_read_zero_and_get_no_row() -> None:
    cfg = TableConfig(dim=4, init_scale=0.5)
    emb = MonolithEmbeddings({"video": SlotSpec(cfg, admission=CountFilter(min_count=2))})
    ids = torch.tensor([10, 11, 11])
    out = emb({"video": ids}, now_s=0)
    # 10 seen once: zero vector, no row. 11 seen twice in the batch: admitted for the batch.
    assert torch.all(out["video"][0] == 0)
    assert torch.all(out["video"][1] != 0)
    out["video"].sum().backward()
    assert emb.apply_gradients(now_s=0) == 1
    table = emb.tables["video"]
    assert table.lookup([10])[0] == -1 and len(table) == 1


def test_eval_forward_is_read_only() -> None:
    emb = MonolithEmbeddings(default_slots(dim=4))
    batch = {"user_id": [1, 2], "video_id": [3, 4], "creator_id": [5, 6], "hashtag_ids": [7, 8, 9]}
    offsets = {"hashtag_ids": [0, 1]}
    emb.eval()
    with torch.no_grad():
        out = emb(batch, offsets)
    assert all(len(t) == 0 for t in emb.tables.values())
    assert all(torch.all(v == 0) for v in out.values())
    emb.train()
    out = emb(batch, offsets, now_s=5)
    assert out["hashtag_ids"].shape == (2, 4)
    assert all(len(t) > 0 for t in emb.tables.values())


def test_two_forwards_then_one_step_sum_gradients() -> None:
    """Gradient accumulation over two forwards equals one forward over the concatenation."""
    cfg = TableConfig(dim=4, init_scale=0.5, adagrad=AdagradConfig(lr=0.2))
    a = MonolithEmbeddings({"x": SlotSpec(cfg)})
    b = MonolithEmbeddings({"x": SlotSpec(cfg)})
    first, second = torch.tensor([1, 2, 3]), torch.tensor([3, 4, 1])
    (a({"x": first}, now_s=1)["x"].pow(2).sum() + a({"x": second}, now_s=1)["x"].pow(2).sum()).backward()
    a.apply_gradients(now_s=1)
    b({"x": torch.cat([first, second])}, now_s=1)["x"].pow(2).sum().backward()
    b.apply_gradients(now_s=1)
    ids = np.array([1, 2, 3, 4])
    np.testing.assert_allclose(a.tables["x"].embeddings_for(ids), b.tables["x"].embeddings_for(ids), rtol=1e-6)
    assert not np.allclose(a.tables["x"].embeddings_for(ids), a.tables["x"].initial_embeddings(ids))


def test_step_refuses_rows_freed_since_forward() -> None:
    emb = MonolithEmbeddings({"x": SlotSpec(TableConfig(dim=2, ttl_seconds=10))})
    emb({"x": torch.tensor([1, 2])}, now_s=0)["x"].sum().backward()
    emb.tables["x"].expire(now_s=100)
    with pytest.raises(RuntimeError, match="deleted/expired"):
        emb.apply_gradients(now_s=100)


def test_hashing_trick_slot_behind_same_api() -> None:
    cfg = TableConfig(dim=4, init_scale=0.5)
    emb = MonolithEmbeddings({"x": SlotSpec(cfg, hashing_trick_rows=3)})
    ids = torch.arange(10)
    out = emb({"x": ids}, now_s=0)["x"]
    # 10 ids in 3 rows: at most 3 distinct vectors (collisions by construction).
    assert len({tuple(r) for r in out.detach().numpy().tolist()}) <= 3
    out.sum().backward()
    assert emb.apply_gradients(now_s=0) <= 3
