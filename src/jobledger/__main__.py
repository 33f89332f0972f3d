"""``python -m jobledger``: the same as the ``jobledger`` command."""

from jobledger.cli import main

main()
