"""`python -m gradkit ...` runs the gradkit command line."""

import sys

from gradkit.cli import main

sys.exit(main())
