"""edgec: from a PyTorch teacher to a compressed, verified and benchmarked edge deployment.

Importing this package is cheap on purpose: it must not import torch.cuda, tensorrt or pycuda
(``tests/test_import.py`` checks it), so ``edgec --version`` and ``edgec doctor`` stay fast and
work on machines where those are broken or absent.
"""

__version__ = "0.1.0"
