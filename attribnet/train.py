"""``python -m attribnet.train``: the command of :mod:`attribnet.cli.train`."""

from attribnet.cli.train import main

if __name__ == "__main__":
    raise SystemExit(main())
