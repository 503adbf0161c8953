"""Compression stages: ``distill`` (knowledge distillation), ``prune``, ``quantize``, ``calibrate``.

Each lives in its own module and is imported from there, so one method's dependencies never load
with another's:

    >>> from edgec.compress.distill import distill, make_distill_method, kd_loss
"""
