"""A tiny, fast recipe for pipeline tests (synthetic data, 2 epochs, short benchmarks)."""

from __future__ import annotations

from pathlib import Path

import yaml

TINY = {
    "edgec": 1,
    "name": "tiny",
    "seed": 0,
    "data": {"name": "synthetic", "synthetic": {"num_classes": 4, "n": 600, "shape": [1, 8, 8]}},
    "teacher": {"model": "teacher_cnn", "params": {"width": 8},
                "train": {"epochs": 2, "batch_size": 64, "lr": 0.003}},
    "student": {"model": "fitnet", "params": {"widths": [4, 8, 8], "convs_per_stage": 1}},
    "distill": {"train": {"epochs": 2, "batch_size": 64, "lr": 0.003}},
    "quantize": {"calibration": {"method": "minmax", "samples": 64}},
    "export": {"exporter": "torchscript"},
    "verify": {"max_int8_accuracy_drop": 1.0, "min_int8_top1_agreement": 0.0},
    "bench": {"batch_size": 8, "warmup_runs": 1, "warmup_s": 0.0, "min_runs": 5, "min_duration_s": 0.02},
}


def write_recipe(folder: Path, **overrides) -> Path:
    """Write TINY (with nested ``section={...}`` overrides merged in) to ``folder/tiny.yaml``."""
    recipe = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY.items()}
    for section, value in overrides.items():
        # A quantize method other than PTQ has its own fields (edgec.configs): TINY's calibration is PTQ's.
        fresh = section == "quantize" and isinstance(value, dict) and value.get("method", "ptq") != "ptq"
        if isinstance(value, dict) and isinstance(recipe.get(section), dict) and not fresh:
            recipe[section] = {**recipe[section], **value}
        else:
            recipe[section] = value
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path
