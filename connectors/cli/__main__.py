import sys

from agon.connectors.cli.main import main

sys.exit(main())
