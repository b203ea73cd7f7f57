"""``python -m nqs``: the ``nqs`` command (:func:`nqs.cli.main`)."""

import sys

from nqs.cli import main

if __name__ == "__main__":
    sys.exit(main())
