"""Iterative feature-map pruning with physical channel removal (Molchanov et al., arXiv:1611.06440).

The schedule of the paper (Sec. 2, Fig. 1): rank every feature map of every layer with one
criterion (``taylor``, ``weight``, ``activation`` or ``random``, see
:mod:`edgec.compress.prune_criteria`), l2-normalised per layer and FLOPs-regularised; remove the
``maps_per_step`` lowest-ranked maps across all layers; fine-tune for ``finetune_batches``
mini-batches; repeat until the target is met:

- ``target_flops``: keep at most this share of the original MACs (0.5 = 2x fewer FLOPs),
- ``target_params``: keep at most this share of the parameters,
- ``max_accuracy_drop``: stop *before* the validation accuracy falls more than this (a fraction:
  0.01 = one point) below the unpruned model's; the step that crossed it is undone.

Several targets can be combined (stop when all ratio targets are met, or the accuracy budget is
spent). The last step removes only as many maps as the FLOPs/params targets still need, so
runs with different criteria end at the same reduction. With ``num_steps`` the ratio targets are
reached in exactly that many steps, step i aiming at ``target ** (i / num_steps)`` (each step
removes the same share of what is left), so different criteria get the same fine-tuning budget.

Channels are removed for real: the result is a smaller dense model plus the :class:`ModelSpec`
that rebuilds it, ready for ``save_model``. edgec's own families are walked by hand
(:mod:`edgec.compress.prune_graph`; the spec's ``channels`` param gives the new widths); any other
model (``torchvision:``, ``timm:``, ``python:``) goes through Torch-Pruning's dependency graph
(:mod:`edgec.compress.prune_dg`: residual streams, depthwise convs and squeeze-excitation coupled;
the spec's ``structure`` gives the new layer shapes). Both feed the same criterion, schedule and
report. With
``round_to=8`` every pruned layer keeps a multiple of 8 channels (tensor-core friendly): maps
are removed in chunks down to the next multiple, never below 8 (or below the original width when
that is smaller), never above the original.

Under torchrun (:mod:`edgec.distributed`) each rank scores its shard of the same batches; the
criterion statistics are averaged over all ranks' samples before ranking, so every rank removes
the same channels (checked at each step), and fine-tuning runs DDP, re-wrapped after each removal.

Example:
    >>> result = prune(model, spec, (x, y), (xv, yv), PruneConfig(criterion="taylor", target_flops=0.5))
    >>> small, small_spec, report = result
    >>> save_model(small, small_spec, "pruned.safetensors"); report["flops_ratio"]
    0.49...
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from edgec import distributed
from edgec.compress.prune_criteria import (LossFn, check_criterion, criterion_scores, map_mflops,
                                           rank_scores)
from edgec.compress.prune_dg import dg_channel_groups, dg_remove_channels, uses_dependency_graph
from edgec.compress.prune_graph import CostModel, channel_groups, conv_widths, remove_channels
from edgec.compress.prune_schedule import BatchStream, choose_maps, finetune_steps, min_widths
from edgec.configs import PruneConfig
from edgec.console import console
from edgec.errors import RecipeError
from edgec.models import ModelSpec
from edgec.train import cross_entropy_loss, evaluate, fit, set_seed
from edgec.train.evaluate import as_tensors, device_of


class PruneResult(NamedTuple):
    """What :func:`prune` returns; unpacks as ``model, spec, report``."""

    model: nn.Module
    spec: ModelSpec
    report: dict[str, Any]


def _say(text: str) -> None:
    console.print(f"prune: {text}", markup=False, highlight=False, soft_wrap=True)


def prune(model: nn.Module, spec: ModelSpec, train: tuple[np.ndarray, np.ndarray],
          val: tuple[np.ndarray, np.ndarray], settings: PruneConfig, *, loss_fn: LossFn | None = None,
          progress: bool = True, workdir: str | Path | None = None) -> PruneResult:
    """Prune whole feature maps of ``model`` (built from ``spec``) until ``settings``' target is met.

    ``settings`` is the recipe's ``prune`` section (:class:`~edgec.configs.PruneConfig`; its
    ``enabled`` and ``distill`` are the pipeline's business: pass the KD loss as ``loss_fn``).
    ``maps_per_step`` defaults to 2% of all maps (at least 1), unless ``num_steps`` spreads the
    ratio targets evenly over that many steps; ``criterion_batches`` training batches estimate
    the criterion before each step. ``settings.train`` gives the fine-tuning optimizer, lr, batch
    size, weight decay, grad_clip and seed and, if its ``epochs > 0``, a final fine-tuning run of
    that many epochs with :func:`edgec.train.fit` (SGD with momentum, as in the paper: a fresh Adam
    after every step starts with near sign-sized updates of every weight, which on a trained model
    costs more than pruning does). ``loss_fn(model, x, y)`` (batch mean; default cross-entropy) is
    the cost C of the criterion and the fine-tuning loss (pass a distillation loss here). The seed
    fixes the batches, the random criterion and (via :func:`edgec.train.set_seed`) dropout;
    ``workdir`` makes the final fine-tuning resumable (``fit``'s checkpoint). ``model`` is not
    modified. Returns ``PruneResult(model, spec, report)``.

    Example:
        >>> small, small_spec, report = prune(model, spec, (x, y), (xv, yv),
        ...                                   PruneConfig(criterion="taylor", target_flops=0.5, round_to=8))
    """
    target_flops, target_params = settings.target_flops, settings.target_params
    max_accuracy_drop, num_steps = settings.max_accuracy_drop, settings.num_steps
    if target_flops is None and target_params is None and max_accuracy_drop is None:
        raise RecipeError("prune needs a target: target_flops, target_params or max_accuracy_drop",
                          hint="e.g. target_flops: 0.5 (keep half of the FLOPs)")
    if num_steps is not None and target_flops is None and target_params is None:
        raise RecipeError("prune num_steps needs target_flops or target_params",
                          hint="set a ratio target, or leave num_steps unset")
    criterion = check_criterion(settings.criterion)
    maps_per_step, finetune_batches = settings.maps_per_step, settings.finetune_batches
    criterion_batches, flops_lambda = settings.criterion_batches, settings.flops_lambda
    round_to, min_channels = settings.round_to, settings.min_channels
    config, seed = settings.train, settings.train.seed
    loss_fn = loss_fn or cross_entropy_loss
    set_seed(seed)
    x_tr, y_tr = as_tensors(train, "training")
    as_tensors(val, "validation")   # checked now rather than after the first pruning step
    say = _say if progress else (lambda _t: None)

    shape = spec.input_shape()
    device = device_of(model)
    model = copy.deepcopy(model).eval()
    graph = uses_dependency_graph(spec)
    groups_of = (lambda m: dg_channel_groups(m, shape)) if graph else channel_groups
    remove = dg_remove_channels if graph else remove_channels
    groups = groups_of(model)
    cost = CostModel(model, groups, shape)
    sizes = {g.name: g.size for g in groups}
    base_flops, base_params = cost.flops(sizes), cost.params(sizes)
    floors = min_widths(groups, min_channels, round_to)
    step_maps = maps_per_step or max(1, round(0.02 * sum(sizes.values())))
    batches = BatchStream(x_tr, y_tr, config.batch_size, seed, device)
    gen = torch.Generator().manual_seed(seed)
    base_acc = evaluate(model, *val, across_ranks=True)[1]
    say(f"{criterion}: {sum(sizes.values())} maps in {len(groups)} groups, {base_flops:,} MACs, "
        f"{base_params:,} params, val_acc {base_acc:.2%}")

    def met(s: dict[str, int], share: float = 1.0) -> bool:
        """Are the ratio targets (raised to ``share``: an intermediate goal) met at sizes s?"""
        ok_f = target_flops is None or cost.flops(s) <= target_flops ** share * base_flops
        ok_p = target_params is None or cost.params(s) <= target_params ** share * base_params
        return (target_flops is not None or target_params is not None) and ok_f and ok_p

    steps: list[dict[str, Any]] = []
    stopped = "target reached"
    t0 = time.perf_counter()
    attempt = 0
    while not met(sizes):
        attempt += 1
        share = min(1.0, attempt / num_steps) if num_steps else 1.0
        if num_steps and met(sizes, share):
            continue   # an earlier step already went past this step's goal
        data = batches.take(criterion_batches) if criterion in ("taylor", "activation") else []
        raw = criterion_scores(criterion, model, groups, data, loss_fn, gen)
        if data:  # under torchrun: means over every rank's samples, identical on all ranks
            raw = distributed.mean_over_samples(raw, sum(len(yb) for _, yb in data))
        scores = rank_scores(raw, map_mflops(model, groups, shape), flops_lambda)
        keep = choose_maps(scores, sizes, floors, round_to, math.inf if num_steps else step_maps,
                       lambda s: met(s, share))
        distributed.check_same(keep, f"the channels to keep at pruning step {len(steps) + 1}")
        if not keep:
            stopped = "no prunable maps left (every layer is at its minimum width)"
            break
        previous = (model, spec, sizes)
        model, spec = remove(model, spec, groups, keep)
        groups = groups_of(model)
        sizes = {g.name: g.size for g in groups}
        # Accuracy right after removal, before fine-tuning: how much the criterion's choice costs
        # (the paper's Fig. 3 view); then after fine-tuning: what the schedule keeps.
        acc_pruned = evaluate(model, *val, across_ranks=True)[1]
        loss = finetune_steps(model, batches, finetune_batches, config, loss_fn)
        acc = evaluate(model, *val, across_ranks=True)[1] if finetune_batches else acc_pruned
        removed = sum(previous[2].values()) - sum(sizes.values())
        row = {"step": len(steps) + 1, "maps_removed": removed,
               "flops_ratio": cost.flops(sizes) / base_flops,
               "params_ratio": cost.params(sizes) / base_params, "train_loss": loss,
               "val_accuracy_pruned": acc_pruned, "val_accuracy": acc}
        if max_accuracy_drop is not None and base_acc - acc > max_accuracy_drop:
            model, spec, sizes = previous
            groups = groups_of(model)
            stopped = (f"accuracy budget: step {row['step']} dropped val_acc to {acc:.2%} "
                       f"(> {max_accuracy_drop:.2%} below {base_acc:.2%}); undone")
            say(stopped)
            break
        steps.append(row)
        say(f"step {row['step']}: -{row['maps_removed']} maps, FLOPs {row['flops_ratio']:.1%}, "
            f"params {row['params_ratio']:.1%}, val_acc {acc:.2%}")

    history = None
    if config.epochs > 0:
        result = fit(model, train, val, config, loss_fn=loss_fn, description="prune finetune",
                     progress=progress, workdir=workdir)
        model, history = result.model, result.to_dict()
    final_acc = evaluate(model, *val, across_ranks=True)[1]
    report = {
        "criterion": criterion, "flops_lambda": flops_lambda, "round_to": round_to,
        "target": {"flops": target_flops, "params": target_params,
                   "max_accuracy_drop": max_accuracy_drop},
        "maps_per_step": None if num_steps else step_maps, "num_steps": num_steps,
        "finetune_batches": finetune_batches,
        "criterion_batches": criterion_batches, "seed": seed, "stopped": stopped,
        "original": {"flops": base_flops, "params": base_params, "val_accuracy": base_acc},
        "final": {"flops": cost.flops(sizes), "params": cost.params(sizes),
                  "val_accuracy": final_acc},
        "flops_ratio": cost.flops(sizes) / base_flops,
        "params_ratio": cost.params(sizes) / base_params,
        "channels": spec.params.get("channels") or conv_widths(model), "steps": steps,
        "final_finetune": history,
        "coupling": ("Torch-Pruning dependency graph: residual adds, depthwise convs and SE gates "
                     "pruned with the maps they share" if graph else
                     "edgec's own walk: residual streams are pruned as one group per stage"),
        "seconds": time.perf_counter() - t0,
    }
    say(f"done ({stopped}): FLOPs {report['flops_ratio']:.1%}, params {report['params_ratio']:.1%},"
        f" val_acc {base_acc:.2%} -> {final_acc:.2%}")
    return PruneResult(model.eval(), spec, report)
