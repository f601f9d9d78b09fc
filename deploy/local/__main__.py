"""`python -m deploy.local up | infra | demo` (see deploy/local/cli.py)."""

import sys

from deploy.local.cli import main

if __name__ == "__main__":
    sys.exit(main())
