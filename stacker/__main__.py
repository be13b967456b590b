"""``python -m stacker``: the ``stacker`` command, where its console script is not on PATH."""

from stacker.launch import main

if __name__ == "__main__":
    main()
