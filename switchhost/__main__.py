"""python -m switchhost: the switch host's daemon (switchhost/daemon.py)."""

import sys

from switchhost.daemon import main

sys.exit(main())
