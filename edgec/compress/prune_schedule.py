"""The pieces of the pruning schedule: a batch stream, short fine-tuning and the global choice.

Example:
    >>> batches = BatchStream(x, y, batch_size=64, seed=0, device=torch.device("cpu"))
    >>> keep = choose_maps(scores, sizes, min_widths(groups, 1, 8), 8, 10, lambda s: False)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch import nn

from edgec import distributed
from edgec.compress.prune_criteria import LossFn
from edgec.compress.prune_graph import ChannelGroup
from edgec.errors import TrainingDiverged
from edgec.train import TrainConfig
from edgec.train.config import make_optimizer


class BatchStream:
    """An endless stream of shuffled training batches (a new permutation per pass), seeded.

    The steps of one pruning run draw from one stream, so successive steps see new data. Under
    torchrun every rank draws the same global batches and gets its shard of each.

    Example:
        >>> x, y = next(BatchStream(xt, yt, 64, seed=0, device=torch.device("cpu")))
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int,
                 device: torch.device):
        self.x, self.y, self.bs, self.device = x, y, batch_size, device
        self.gen = torch.Generator().manual_seed(seed)
        self._it: Iterator[torch.Tensor] = iter(())

    def _epoch(self) -> Iterator[torch.Tensor]:
        order = torch.randperm(len(self.y), generator=self.gen)
        for s in range(0, len(order), self.bs):
            # a batch of one (on any rank) breaks train-mode BatchNorm
            if len(order) - s >= 2 * distributed.world_size() or s == 0:
                yield distributed.shard(order[s:s + self.bs])

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = next(self._it, None)
        if idx is None:
            self._it = self._epoch()
            idx = next(self._it)
        return self.x[idx].to(self.device), self.y[idx].to(self.device)

    def take(self, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The next ``n`` batches, as a list."""
        return [next(self) for _ in range(n)]


def finetune_steps(model: nn.Module, batches: BatchStream, steps: int, config: TrainConfig,
                   loss_fn: LossFn) -> float:
    """``steps`` optimizer updates in train mode; returns the mean loss; leaves eval mode.

    A fresh optimizer every time: the old one's state has the shapes of the unpruned layers.
    Uses ``config``'s optimizer, lr, momentum, weight decay and grad_clip (no lr schedule).
    Under torchrun: DDP wrapped anew (the shapes changed), the loss and NaN check reduced over
    ranks, and rank 0's buffers copied to all at the end.

    Example:
        >>> finetune_steps(model, batches, 30, TrainConfig(lr=1e-3), cross_entropy_loss)
        0.08...
    """
    if steps == 0:
        return float("nan")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, config)
    model.train()
    total = 0.0
    world = distributed.world_size()
    with distributed.data_parallel(model, params) as net:
        for _ in range(steps):
            x, y = next(batches)
            loss = loss_fn(net, x, y)
            loss_sum, n, bad = distributed.sum_floats(float(loss.detach()) * len(y), len(y),
                                                      float(not torch.isfinite(loss)))
            if bad or not math.isfinite(loss_sum):
                raise TrainingDiverged(f"pruning fine-tuning diverged: the loss became {loss_sum / n}",
                                       hint=f"lower the fine-tuning lr (now {config.lr:g})")
            optimizer.zero_grad(set_to_none=True)
            if world > 1 and len(y) * world != n:  # unequal shards: weight to the global mean
                loss = loss * (len(y) * world / n)
            loss.backward()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            optimizer.step()
            total += loss_sum / n
    distributed.sync_buffers(model)
    model.eval()
    return total / steps


def min_widths(groups: list[ChannelGroup], min_channels: int, round_to: int) -> dict[str, int]:
    """The fewest channels each group may keep: ``min_channels`` rounded up to a multiple of
    ``round_to``, but never more than the group has (a 4-wide layer under round_to=8 stays 4).

    Example:
        >>> min_widths(groups, 1, 8)      # {'features.block1.conv1': 8, ...}
    """
    floor = round_to * math.ceil(min_channels / round_to)
    return {g.name: min(g.size, floor) for g in groups}


def choose_maps(scores: dict[str, torch.Tensor], sizes: dict[str, int], floors: dict[str, int],
                round_to: int, count: float,
                done: Callable[[dict[str, int]], bool]) -> dict[str, list[int]]:
    """Which channels each group keeps after removing the globally lowest-scored units.

    A unit is one map, or with ``round_to`` > 1 the group's lowest maps down to its next multiple
    of ``round_to`` (ranked by their mean score). Units are removed until ``count`` maps are gone
    or ``done(sizes)`` is true (checked before each removal); no group goes below its floor.
    Returns ``{group: sorted kept channels}`` for the groups that lose maps.

    Example:
        >>> choose_maps({"a": torch.tensor([0.3, 0.1, 0.2])}, {"a": 3}, {"a": 1}, 1, 1,
        ...             lambda s: False)
        {'a': [0, 2]}
    """
    order = {n: torch.argsort(s).tolist() for n, s in scores.items()}  # ascending importance
    removed = {n: 0 for n in scores}
    sizes = dict(sizes)
    total = 0
    while total < count and not done(sizes):
        best, best_score, best_r = None, math.inf, 0
        for name, size in sizes.items():
            r = size % round_to or round_to
            if size - r < floors[name]:
                continue
            unit = order[name][removed[name]:removed[name] + r]
            score = float(scores[name][unit].mean())
            if score < best_score:
                best, best_score, best_r = name, score, r
        if best is None:
            break
        removed[best] += best_r
        sizes[best] -= best_r
        total += best_r
    return {n: sorted(order[n][k:]) for n, k in removed.items() if k}
