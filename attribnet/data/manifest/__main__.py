"""``python -m attribnet.data.manifest``: see :mod:`attribnet.data.manifest.cli`."""

from attribnet.data.manifest.cli import main

raise SystemExit(main())
