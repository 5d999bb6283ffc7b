import sys

from safevid.cli import main

sys.exit(main())
