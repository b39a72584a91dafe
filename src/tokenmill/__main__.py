"""``python -m tokenmill`` is the ``tokenmill`` command."""
import sys

from .cli import main

sys.exit(main())
