"""Transitional home of :mod:`edgec.engine.kernels` only; every backend lives in :mod:`edgec.backends`.

``kernels.py`` moves to ``edgec/backends/kernels/`` once its owner's work on it is finished.
"""
