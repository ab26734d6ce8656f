"""``python -m attribnet.data.synthetic``: see :mod:`attribnet.data.synthetic.cli`."""

from attribnet.data.synthetic.cli import main

raise SystemExit(main())
