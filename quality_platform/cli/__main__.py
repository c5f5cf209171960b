"""``python -m quality_platform.cli`` = ``qp``."""

import sys

from quality_platform.cli import main

sys.exit(main())
