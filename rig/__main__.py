"""``python -m rig``: the ``rig`` command, where its console script is not on PATH."""

from rig.launch import main

if __name__ == "__main__":
    main()
