"""``python -m attribnet.serve``: see :mod:`attribnet.cli.serve`."""

from attribnet.cli.serve import main

raise SystemExit(main())
