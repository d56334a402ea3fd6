import sys

from nfc_bridge.cli import main

sys.exit(main())
