"""``python -m hotremove``: the same as the ``hotremove`` command."""

from hotremove.startup import main

if __name__ == "__main__":
    main()
