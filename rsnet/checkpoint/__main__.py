"""``python -m rsnet.checkpoint``."""
import sys

from .command import main

sys.exit(main())
