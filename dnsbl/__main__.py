import sys

from dnsbl.cli import main

sys.exit(main())
