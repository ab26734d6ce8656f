"""``python -m attribnet.query``: see :mod:`attribnet.query.cli`."""

from attribnet.query.cli import main

raise SystemExit(main())
