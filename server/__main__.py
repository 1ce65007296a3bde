"""``python -m server``: the ``hearth`` command without its console script.

The supervisor starts its children this way, so they run on the same
interpreter even when ``hearth`` is not on PATH.
"""

from server.cli import main

main()
