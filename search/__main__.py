"""``python -m search``: the ``hpsearch`` command line."""

import sys

from search.cli import main

sys.exit(main())
