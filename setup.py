"""Which packages the wheel ships (the rest of the build configuration is in pyproject.toml).

Every ``edgec*`` package found in the tree, plus ``edgec.kernels.cuda``: pyproject's
``[tool.setuptools.package-dir]`` maps that one to the top-level ``kernels/`` folder (the CUDA sources),
which ``find`` alone cannot see. New packages under ``edgec/`` need no change here.
"""

from setuptools import find_namespace_packages, setup

setup(packages=[*find_namespace_packages(include=["edgec", "edgec.*"]), "edgec.kernels.cuda"])
