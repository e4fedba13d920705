"""``python -m chargeback``: the same command line as the ``chargeback`` script."""

import sys

from chargeback.cli import main

sys.exit(main())
