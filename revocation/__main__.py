import sys

from revocation.cli import main

sys.exit(main())
