"""``python -m attribnet.export``: see :mod:`attribnet.export.cli`."""

from attribnet.export.cli import main

raise SystemExit(main())
