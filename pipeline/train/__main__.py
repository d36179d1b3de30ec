"""`python -m pipeline.train ...` == `ofa-mcu train ...` (handy under torchrun)."""
import sys

from ..cli import main

sys.exit(main(["train", *sys.argv[1:]]))
