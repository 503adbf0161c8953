"""The one training loop every edgec stage uses: seeded, resumable, NaN-guarded, with progress.

Example:
    >>> from edgec.train import TrainConfig, fit, evaluate, set_seed
    >>> set_seed(0); model = make_model()
    >>> result = fit(model, (x, y), (xv, yv), TrainConfig(epochs=5), workdir="runs/teacher")
    >>> evaluate(result.model, xv, yv)          # (mean cross-entropy, accuracy)
"""

from edgec.train.config import LossFn, TrainConfig, TrainResult
from edgec.train.evaluate import evaluate
from edgec.train.loop import cross_entropy_loss, fit, set_seed

__all__ = ["LossFn", "TrainConfig", "TrainResult", "cross_entropy_loss", "evaluate", "fit",
           "set_seed"]
