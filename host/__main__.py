import sys

from routeiq.cli import main

sys.exit(main())
