"""`python -m pipeline ...` == `ofa-mcu ...`; what torchrun runs: `torchrun --nproc_per_node=2 -m pipeline train ...`."""
import sys

from .cli import main

sys.exit(main())
