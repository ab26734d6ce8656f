"""``python -m attribnet.data.manifest``: see :mod:`attribnet.cli.manifest`."""

from attribnet.cli.manifest import main

raise SystemExit(main())
