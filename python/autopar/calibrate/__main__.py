"""`python -m autopar.calibrate ...`: see autopar/calibrate/cli.py."""

import sys

from autopar.calibrate.cli import main

sys.exit(main())
