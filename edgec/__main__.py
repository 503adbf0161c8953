"""``python -m edgec`` == ``edgec`` (torchrun launches modules this way)."""

from edgec.cli import main

main()
