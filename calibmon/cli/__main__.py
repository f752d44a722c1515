"""``python -m calibmon.cli ...``: the same as ``calibmon ...``."""

import sys

from calibmon.cli.main import main

sys.exit(main())
