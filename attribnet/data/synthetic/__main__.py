"""``python -m attribnet.data.synthetic``: see :mod:`attribnet.cli.synthetic`."""

from attribnet.cli.synthetic import main

raise SystemExit(main())
