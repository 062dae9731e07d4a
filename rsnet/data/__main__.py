"""``python -m rsnet.data``."""
import sys

from .command import main

sys.exit(main())
