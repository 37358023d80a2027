"""``python -m walloc_cdl.cli`` (what torchrun runs): the ``walloc-cdl`` command."""
import sys

from . import main

sys.exit(main())
