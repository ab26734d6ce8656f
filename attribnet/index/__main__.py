"""``python -m attribnet.index``: see :mod:`attribnet.cli.index`."""

from attribnet.cli.index import main

raise SystemExit(main())
