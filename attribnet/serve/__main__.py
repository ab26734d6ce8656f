"""``python -m attribnet.serve``: see :mod:`attribnet.serve.cli`."""

from attribnet.serve.cli import main

raise SystemExit(main())
