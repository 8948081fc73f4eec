"""`python -m tinygrad_np` is the `tinygrad-np` command."""

import sys

from tinygrad_np.cli import main

sys.exit(main())
