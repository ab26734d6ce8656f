"""``python -m attribnet.evaluate``: see :mod:`attribnet.evaluate.cli`."""

from attribnet.evaluate.cli import main

raise SystemExit(main())
