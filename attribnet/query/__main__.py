"""``python -m attribnet.query``: see :mod:`attribnet.cli.query`."""

from attribnet.cli.query import main

raise SystemExit(main())
