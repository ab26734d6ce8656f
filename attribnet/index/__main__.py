"""``python -m attribnet.index``: see :mod:`attribnet.index.cli`."""

from attribnet.index.cli import main

raise SystemExit(main())
