"""`python -m cpo_gateway` is the same as the `cpo-gateway` command."""

import sys

from cpo_gateway.cli import main

sys.exit(main())
