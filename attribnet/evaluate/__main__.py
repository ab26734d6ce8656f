"""``python -m attribnet.evaluate``: see :mod:`attribnet.cli.evaluate`."""

from attribnet.cli.evaluate import main

raise SystemExit(main())
