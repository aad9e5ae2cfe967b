"""``python -m pipeline`` is the ``lstm-forecast`` command."""

import sys

from pipeline.cli import main

sys.exit(main())
