"""A generated impression log with a conversion funnel (impression -> click -> purchase) whose
true probabilities are known, so every model's gap to the best possible AUC can be measured.

The world (drawn once from the seed):

- users u with latents a_u and activity w_u ~ LogNormal(0, 1) (how often u browses);
  items i with latents b_i, a category c_i, a price log p_i ~ N(3, 0.8²) and a Zipf
  popularity pi_i ∝ rank_i^(-zipf);
- users have observed attributes (an age group g_u of 7, a gender s_u of 2, a city t_u of
  ``cities``, the cities' sizes Zipf-like), items a brand br_i of ``brands``, and the latents
  are partly theirs (``attribute_share`` rho, 0.9 by default), each coordinate of unit
  variance:

  a_u = sqrt(rho) (A_age[g_u] + A_gender[s_u] + A_city[t_u]) / sqrt(3) + sqrt(1 - rho) e_u
  b_i = sqrt(rho) (B_category[c_i] + B_brand[br_i]) / sqrt(2) + sqrt(1 - rho) f_i

  with every A, B, e, f ~ N(0, I_k): what a model can learn from columns shared by many
  users or items, where the rest (e_u, f_i) must be learnt from each id's own rows, as in
  real logs with profiles and catalogues. rho = 0 is the world without attributes (its
  columns absent), row for row the default before attributes were added; with it no model
  came within 0.03 AUC of the oracle, most users' latents being learnt from a handful of
  impressions (docs/recsys.md);
- click and purchase read partly different latent directions: click the first
  ``click_dims`` coordinates S_c, purchase the last ``purchase_dims`` S_p, overlapping in
  ``shared_dims`` (so the tasks are related but not the same, which is where one gate per
  task should pay; measured, MMoE's lead over a shared bottom is larger the less the tasks
  overlap, and nil when they read the same latents: docs/recsys.md);

  r_c(u, i) = <a_u, b_i>_{S_c} / sqrt(|S_c|),   r_p(u, i) = <a_u, b_i>_{S_p} / sqrt(|S_p|)

Each impression (in time order): a user drawn by activity; ``candidates`` items drawn by
popularity; the shown item chosen among them with probability softmax(exposure * r_c), so
impressions are not random; its position is 1 + its rank by relevance among the candidates;
context: device (ios/android/web) and hour of day. Then

  logit P(click)          = click_bias + 1.5 r_c + 0.3 z_pop(i) - 0.15 (position - 1)
                            + d_click(device) + 0.3 sin(2 pi hour / 24)
  logit P(buy | click)    = purchase_bias + 1.5 r_p - 0.5 z_price(i) + e(category)
                            + d_buy(device)

with z_pop, z_price the standardised log popularity and log price, e(c) ~ N(0, 0.5²), and
click ~ Bernoulli(P(click)), purchase = click * Bernoulli(P(buy | click)). The history column
holds the items the same user clicked before this impression (the last ``history_len``,
oldest first): never an item from the future. The true probabilities are columns
(``p_click``, ``p_buy_given_click``, ``p_click_buy``), so the oracle AUC of each task is the
AUC of its true probability.

Rows are generated in fixed blocks of ``BLOCK`` impressions (memory bounded by a block and
the users' histories, not by ``rows``) and written as Parquet shards ``part-NNNNN.parquet`` of
``shard_rows`` rows, in time order, split by time into ``train/``, ``valid/`` and ``test/``;
the first N impressions do not depend on ``rows``. The defaults give a click rate near 13%
and a purchase rate near 22% of clicks (without the attributes: 10% and 20%).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from ... import _checks
from ..._fileio import AtomicFile, atomic_dir, write_json
from ...config import default_buckets
from ..writers import ParquetShards

BLOCK = 1 << 18  # impressions generated at once
DEVICES = np.array(["ios", "android", "web"])
DEVICE_CLICK = np.array([0.2, 0.0, -0.2])
DEVICE_BUY = np.array([0.3, 0.0, -0.1])
GENERATOR = "mmoe-funnel"


@dataclass(frozen=True)
class FunnelSpec:
    """Settings of the funnel generator (see the module docstring for the equations).

    Args:
        rows: impressions.
        users: U.
        items: I.
        click_dims, purchase_dims, shared_dims: sizes of S_c, S_p and their overlap.
        categories: item categories.
        attribute_share: rho, the share of each latent coordinate's variance that the
            users' and items' observed attributes explain (0: no attribute columns).
        cities, brands: the attributes' sizes (used when ``attribute_share`` > 0).
        history_len: clicked items kept per row (the most recent ones).
        candidates: items drawn per impression before exposure picks one.
        exposure: softmax temperature of exposure on click relevance (0: random).
        zipf: popularity exponent.
        click_bias, purchase_bias: the logits' intercepts.
        seed: fixes the world and every impression.
        shard_rows: rows per Parquet file.
        valid_fraction, test_fraction: the latest impressions held out (test last).

    Example:
        >>> FunnelSpec(rows=1000, users=50, items=20).latent_dim
        8
    """

    rows: int = 1_000_000
    users: int = 30_000
    items: int = 8_000
    click_dims: int = 5
    purchase_dims: int = 5
    shared_dims: int = 2
    categories: int = 50
    attribute_share: float = 0.9
    cities: int = 100
    brands: int = 1000
    history_len: int = 10
    candidates: int = 8
    exposure: float = 1.0
    zipf: float = 1.1
    click_bias: float = -5.5
    purchase_bias: float = -3.0
    seed: int = 0
    shard_rows: int = 1_000_000
    valid_fraction: float = 0.1
    test_fraction: float = 0.1

    def __post_init__(self) -> None:
        for name in ("rows", "users", "items", "click_dims", "purchase_dims", "categories",
                     "cities", "brands", "history_len", "candidates", "shard_rows"):
            _checks.positive_int(getattr(self, name), name)
        _checks.check(isinstance(self.shared_dims, int) and
                      0 <= self.shared_dims <= min(self.click_dims, self.purchase_dims),
                      f"shared_dims must be an integer in [0, min(click_dims, purchase_dims)], "
                      f"got {self.shared_dims!r}")
        for name in ("exposure", "zipf"):
            _checks.non_negative(getattr(self, name), name)
        _checks.check(isinstance(self.attribute_share, float | int)
                      and 0 <= self.attribute_share <= 1,
                      f"attribute_share must be a number in [0, 1], got "
                      f"{self.attribute_share!r}")
        for name in ("valid_fraction", "test_fraction"):
            _checks.check(isinstance(getattr(self, name), float | int)
                          and 0 < getattr(self, name) < 0.5,
                          f"{name} must be a number in (0, 0.5), got {getattr(self, name)!r}")

    @property
    def latent_dim(self) -> int:
        """k = |S_c| + |S_p| - overlap."""
        return self.click_dims + self.purchase_dims - self.shared_dims

    @property
    def click_latents(self) -> slice:
        """S_c: the first ``click_dims`` latent coordinates."""
        return slice(0, self.click_dims)

    @property
    def purchase_latents(self) -> slice:
        """S_p: the last ``purchase_dims`` latent coordinates."""
        return slice(self.latent_dim - self.purchase_dims, self.latent_dim)


@dataclass(frozen=True)
class FunnelWorld:
    """The users and items a funnel's impressions are drawn from (what the oracle knows)."""

    user_latent: np.ndarray  # (U, k)
    user_activity: np.ndarray  # (U,) sampling probabilities
    item_latent: np.ndarray  # (I, k)
    item_popularity: np.ndarray  # (I,) sampling probabilities
    item_category: np.ndarray  # (I,) int
    log_price: np.ndarray  # (I,)
    category_effect: np.ndarray  # (C,)
    user_attributes: dict[str, np.ndarray]  # name -> (U,) int codes; empty when rho = 0
    item_attributes: dict[str, np.ndarray]  # name -> (I,) int codes; empty when rho = 0


ATTRIBUTE_COLUMNS = ("user_age", "user_gender", "user_city", "item_brand")
AGE_GROUPS = np.array(["18-24", "25-34", "35-44", "45-54", "55-64", "65+", "unknown"])
GENDERS = np.array(["f", "m"])


def _seeds(spec: FunnelSpec) -> tuple[np.random.SeedSequence, np.random.SeedSequence]:
    """The world's seed and the blocks' seed of ``spec``."""
    world, blocks = np.random.SeedSequence(spec.seed).spawn(2)
    return world, blocks


def _attribute_seed(spec: FunnelSpec) -> np.random.SeedSequence:
    """The attributes' seed: its own entropy, so the world without attributes draws what it
    always drew, and no block's stream (entropy ``seed``, key ``(b,)``) is this one."""
    return np.random.SeedSequence([spec.seed, 1])


def _with_attributes(spec: FunnelSpec, user_latent: np.ndarray, item_latent: np.ndarray,
                     category: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray],
                                dict[str, np.ndarray]]:
    """The latents (U, k), (I, k) mixed with their attributes' (module docstring), and the
    users' and items' attribute codes by column name (empty at rho = 0)."""
    rho = spec.attribute_share
    if rho == 0:
        return user_latent, item_latent, {}, {}
    rng = np.random.default_rng(_attribute_seed(spec))
    k = spec.latent_dim
    city_size = np.arange(1, spec.cities + 1, dtype=np.float64) ** -1.0
    users = {"user_age": rng.integers(0, len(AGE_GROUPS), spec.users),
             "user_gender": rng.integers(0, len(GENDERS), spec.users),
             "user_city": rng.choice(spec.cities, spec.users, p=city_size / city_size.sum())}
    items = {"item_brand": rng.integers(0, spec.brands, spec.items)}
    from_users = (rng.standard_normal((len(AGE_GROUPS), k))[users["user_age"]]
                  + rng.standard_normal((len(GENDERS), k))[users["user_gender"]]
                  + rng.standard_normal((spec.cities, k))[users["user_city"]]) / math.sqrt(3)
    from_items = (rng.standard_normal((spec.categories, k))[category]
                  + rng.standard_normal((spec.brands, k))[items["item_brand"]]) / math.sqrt(2)
    mix = (math.sqrt(rho), math.sqrt(1 - rho))
    return (mix[0] * from_users + mix[1] * user_latent, mix[0] * from_items + mix[1] * item_latent,
            users, items)


def funnel_world(spec: FunnelSpec) -> FunnelWorld:
    """The world of ``spec`` (drawn from its seed, before any impression): every user's and
    item's latent vector, the activities, popularities, categories and prices.

    Example:
        >>> world = funnel_world(FunnelSpec(rows=100, users=40, items=30, seed=1))
        >>> world.user_latent.shape, world.item_latent.shape
        ((40, 8), (30, 8))
    """
    rng = np.random.default_rng(_seeds(spec)[0])
    k = spec.latent_dim
    activity = rng.lognormal(0.0, 1.0, spec.users)
    rank = rng.permutation(spec.items) + 1
    popularity = rank.astype(np.float64) ** -spec.zipf
    user_latent = rng.standard_normal((spec.users, k))
    item_latent = rng.standard_normal((spec.items, k))
    category = rng.integers(0, spec.categories, spec.items)
    log_price, category_effect = rng.normal(3.0, 0.8, spec.items), rng.normal(0.0, 0.5,
                                                                             spec.categories)
    user_latent, item_latent, users, items = _with_attributes(spec, user_latent, item_latent,
                                                              category)
    return FunnelWorld(user_latent, activity / activity.sum(), item_latent,
                       popularity / popularity.sum(), category, log_price, category_effect,
                       users, items)


def _standardised(values: np.ndarray) -> np.ndarray:
    return (values - values.mean()) / max(float(values.std()), 1e-12)


def _relevance(a: np.ndarray, b: np.ndarray, dims: slice) -> np.ndarray:
    """<a, b> over ``dims`` / sqrt(|dims|), row by row (..., k) x (..., k) -> (...)."""
    width = dims.stop - dims.start
    return (a[..., dims] * b[..., dims]).sum(-1) / math.sqrt(width)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


class _Histories:
    """The last L clicked items of every user, carried from block to block (-1: empty)."""

    def __init__(self, users: int, length: int):
        self.last = np.full((users, length), -1, dtype=np.int64)  # (U, L), oldest first

    def of_block(self, user: np.ndarray, item: np.ndarray, click: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Each row's history before it: (values, lengths) of a list column; then updates
        the carried histories with the block's clicks."""
        n, length = len(user), self.last.shape[1]
        order = np.lexsort((np.arange(n), user))  # by user, then time
        u_sorted, c_sorted = user[order], click[order].astype(np.int64)
        groups, starts, counts = np.unique(u_sorted, return_index=True, return_counts=True)
        clicks_per_group = np.add.reduceat(c_sorted, starts)  # (G,)
        # flat[g] = the user's carried L items, then the block's clicked items in time order
        seg_start = np.concatenate([[0], np.cumsum(length + clicks_per_group)[:-1]])
        flat = np.empty(int((length + clicks_per_group).sum()), dtype=np.int64)
        pos = seg_start[:, None] + np.arange(length)
        flat[pos] = self.last[groups]
        clicked = c_sorted.astype(bool)
        group_of_row = np.repeat(np.arange(len(groups)), counts)
        before = np.cumsum(c_sorted) - c_sorted  # clicks earlier in the block, any user
        before -= np.repeat(before[starts], counts)  # ... of this row's user
        flat[seg_start[group_of_row[clicked]] + length + before[clicked]] = item[order][clicked]
        window = flat[(seg_start[group_of_row] + before)[:, None] + np.arange(length)]  # (n, L)
        self.last[groups] = flat[(seg_start + clicks_per_group)[:, None] + np.arange(length)]
        histories = np.empty_like(window)
        histories[order] = window  # back to time order
        return histories, (histories >= 0).sum(1)


def _block(spec: FunnelSpec, world: FunnelWorld, rng: np.random.Generator, first: int, n: int,
           histories: _Histories) -> pa.Table:
    """Impressions ``first .. first + n - 1`` as an Arrow table. Every draw is a whole
    block's (``BLOCK`` rows) cut to the first ``n``, so a row's values do not depend on how
    many rows its block holds: the first N impressions do not depend on ``rows``."""
    sc, sp = spec.click_latents, spec.purchase_latents
    user = rng.choice(spec.users, BLOCK, p=world.user_activity)[:n]
    cand = rng.choice(spec.items, (BLOCK, spec.candidates),
                      p=world.item_popularity)[:n]  # (n, M)
    rel = _relevance(world.user_latent[user][:, None, :], world.item_latent[cand], sc)  # (n, M)
    z = spec.exposure * rel
    weights = np.exp(z - z.max(1, keepdims=True))
    pick = (rng.random((BLOCK, 1))[:n] * weights.sum(1, keepdims=True)
            < np.cumsum(weights, 1)).argmax(1)  # categorical draw per row
    item = cand[np.arange(n), pick]
    r_c = rel[np.arange(n), pick]
    position = 1 + (rel > r_c[:, None]).sum(1)
    device = rng.integers(0, len(DEVICES), BLOCK)[:n]
    hour = rng.integers(0, 24, BLOCK)[:n]
    z_pop = _standardised(np.log(world.item_popularity))[item]
    z_price = _standardised(world.log_price)[item]
    r_p = _relevance(world.user_latent[user], world.item_latent[item], sp)
    p_click = _sigmoid(spec.click_bias + 1.5 * r_c + 0.3 * z_pop - 0.15 * (position - 1)
                       + DEVICE_CLICK[device] + 0.3 * np.sin(2 * np.pi * hour / 24))
    p_buy = _sigmoid(spec.purchase_bias + 1.5 * r_p - 0.5 * z_price
                     + world.category_effect[world.item_category[item]] + DEVICE_BUY[device])
    click = rng.random(BLOCK)[:n] < p_click
    purchase = click & (rng.random(BLOCK)[:n] < p_buy)
    history, lengths = histories.of_block(user, item, click)
    values = history[history >= 0]  # row by row, oldest first: -1 padding leads
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    attributes = {}
    if world.user_attributes:
        codes = world.user_attributes
        attributes = {"user_age": AGE_GROUPS[codes["user_age"][user]],
                      "user_gender": GENDERS[codes["user_gender"][user]],
                      "user_city": np.char.add("t", codes["user_city"][user].astype(str)),
                      "item_brand": np.char.add(
                          "b", world.item_attributes["item_brand"][item].astype(str))}
    return pa.table({
        "row": np.arange(first, first + n, dtype=np.int64),
        "user_id": user.astype(np.int64), "item_id": item.astype(np.int64),
        **attributes,
        "item_category": np.char.add("c", world.item_category[item].astype(str)),
        "price": np.round(np.exp(world.log_price[item]), 2),
        "position": position.astype(np.int64), "device": DEVICES[device],
        "hour": np.char.add("h", hour.astype(str)),
        "history": pa.ListArray.from_arrays(pa.array(offsets), pa.array(values)),
        "click": click.astype(np.int8), "purchase": purchase.astype(np.int8),
        "p_click": p_click.astype(np.float32), "p_buy_given_click": p_buy.astype(np.float32),
        "p_click_buy": (p_click * p_buy).astype(np.float32)})


def funnel_blocks(spec: FunnelSpec) -> Iterator[pa.Table]:
    """The impressions of ``spec`` in time order, ``BLOCK`` rows at a time.

    Example:
        >>> tables = list(funnel_blocks(FunnelSpec(rows=500, users=40, items=30, seed=1)))
        >>> tables[0].num_rows, tables[0].column_names[:3]
        (500, ['row', 'user_id', 'item_id'])
    """
    world, block_seeds = funnel_world(spec), _seeds(spec)[1]
    histories = _Histories(spec.users, spec.history_len)
    for b in range(math.ceil(spec.rows / BLOCK)):
        # block b's stream is SeedSequence(seed, spawn_key=(b,)): block 0's is the world's
        # own (an oversight kept so that data generated before stays the same; its draws
        # are other functions of that stream, not copies of the world's)
        rng = np.random.default_rng(np.random.SeedSequence(block_seeds.entropy, spawn_key=(b,)))
        n = min(BLOCK, spec.rows - b * BLOCK)
        yield _block(spec, world, rng, b * BLOCK, n, histories)


def split_rows(spec: FunnelSpec) -> dict[str, tuple[int, int]]:
    """Each split's impressions ``[start, stop)``, in time order: train, valid, test (the
    latest ``test_fraction``).

    Example:
        >>> split_rows(FunnelSpec(rows=1000))
        {'train': (0, 800), 'valid': (800, 900), 'test': (900, 1000)}
    """
    n_test = round(spec.rows * spec.test_fraction)
    n_valid = round(spec.rows * spec.valid_fraction)
    train = spec.rows - n_valid - n_test
    return {"train": (0, train), "valid": (train, train + n_valid),
            "test": (train + n_valid, spec.rows)}


def generate_funnel(spec: FunnelSpec, out: str | os.PathLike,
                    progress: Callable[[int], None] | None = None) -> Path:
    """Write the funnel data set to directory ``out`` (created whole, atomically): Parquet
    shards ``part-NNNNN.parquet`` of the splits ``train/``, ``valid/`` and ``test/`` (in time
    order: :func:`split_rows`), ``generator.json`` (the settings, the equations' source, the
    column meanings) and ``mmoe.toml``, a config for `mmoe train` on it.

    Args:
        spec: the settings.
        out: the directory to create (must not exist, or be empty).
        progress: called with the rows just generated.

    Returns:
        ``out``.

    Example:
        >>> out = generate_funnel(FunnelSpec(rows=3000, users=100, items=50, shard_rows=1000),
        ...                       tmp_path / "funnel")
        >>> sorted(p.name for p in out.iterdir())
        ['generator.json', 'mmoe.toml', 'test', 'train', 'valid']
        >>> sorted(p.name for p in (out / "train").iterdir())
        ['part-00000.parquet', 'part-00001.parquet', 'part-00002.parquet']
    """
    out = Path(out)
    splits = split_rows(spec)
    with atomic_dir(out) as stage:
        writers = {name: ParquetShards(stage / name, spec.shard_rows) for name in splits}
        first = 0
        for table in funnel_blocks(spec):
            for name, (start, stop) in splits.items():
                lo, hi = max(start, first), min(stop, first + table.num_rows)
                if lo < hi:
                    writers[name].add(table.slice(lo - first, hi - lo))
            first += table.num_rows
            if progress is not None:
                progress(table.num_rows)
        for writer in writers.values():
            writer.close()
        write_json(stage / "generator.json", {
            "generator": GENERATOR, "spec": asdict(spec), "splits": splits,
            "columns": columns(spec), "equations": "mmoe.data.datasets.funnel (module docstring)"})
        with AtomicFile(stage / "mmoe.toml") as f:
            f.handle.write(config_text(spec).encode())
    return out


def config_text(spec: FunnelSpec) -> str:
    """``mmoe.toml``, a config for `mmoe train --config` on the generated data: the tasks,
    the true probabilities and the row index kept out of the inputs, metrics per user, the
    id columns stated exactly (buckets from the generator's counts, not from the rows the
    encoder is fitted on), early stopping two epochs past the best; the other columns' specs
    are inferred.

    Example:
        >>> import tomllib
        >>> tomllib.loads(config_text(FunnelSpec(users=1000, items=300)))["features"]["item_id"]
        {'kind': 'hashed', 'buckets': 1024}
    """
    return f"""# mmoe train --config THIS_FILE --out DIR   (written by mmoe data generate funnel)
tasks = ["click:binary:1", "purchase:binary:1"]

[data]
train = "train"
valid = "valid"

[columns]
exclude = ["row", "p_click", "p_buy_given_click", "p_click_buy"]
group_by = "user_id"

[features.user_id]
kind = "hashed"
buckets = {default_buckets(spec.users)}

[features.item_id]
kind = "hashed"
buckets = {default_buckets(spec.items)}

[features.history]
kind = "sequence"
share = "item_id"
max_len = {spec.history_len}

[training]
patience = 2   # the ids overfit after an epoch or two: stop two epochs past the best one
"""


COLUMNS = {
    "row": "impression index (time order)",
    "user_id": "user, int64 (many values: a hashed id)",
    "item_id": "shown item, int64 (many values: a hashed id)",
    "user_age": "the user's age group", "user_gender": "the user's gender",
    "user_city": "the user's city", "item_brand": "the item's brand",
    "item_category": "the item's category", "price": "the item's price",
    "position": "1 + the item's rank by click relevance among the candidates",
    "device": "ios, android or web", "hour": "hour of day",
    "history": "items this user clicked before this impression, oldest first",
    "click": "label: clicked", "purchase": "label: clicked and bought (0 without a click)",
    "p_click": "true P(click)", "p_buy_given_click": "true P(buy | click)",
    "p_click_buy": "true P(click and buy) = p_click * p_buy_given_click",
}


def columns(spec: FunnelSpec) -> dict[str, str]:
    """The columns ``spec``'s rows have, with their meanings (no attributes at rho = 0).

    Example:
        >>> "user_city" in columns(FunnelSpec()), "user_city" in columns(
        ...     FunnelSpec(attribute_share=0))
        (True, False)
    """
    return {name: meaning for name, meaning in COLUMNS.items()
            if spec.attribute_share > 0 or name not in ATTRIBUTE_COLUMNS}


def read_generator_info(directory: str | os.PathLike) -> dict:
    """The ``generator.json`` of a generated funnel directory.

    Example:
        >>> out = generate_funnel(FunnelSpec(rows=200, users=20, items=10), tmp_path / "f")
        >>> read_generator_info(out)["spec"]["rows"]
        200
    """
    path = Path(directory) / "generator.json"
    _checks.check(path.is_file(), f"'{directory}' is not a generated funnel directory (no "
                  "generator.json); make one with `mmoe data generate funnel --out DIR`")
    info = json.loads(path.read_text())
    _checks.check(isinstance(info, dict) and info.get("generator") == GENERATOR,
                  f"'{path}' was not written by the funnel generator")
    return info
