"""``python -m attribnet.export``: see :mod:`attribnet.cli.export`."""

from attribnet.cli.export import main

raise SystemExit(main())
