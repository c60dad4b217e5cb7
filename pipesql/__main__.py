import sys

from pipesql.cli import main

sys.exit(main())
