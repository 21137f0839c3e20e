"""`python -m notifier.cli`: the same as the `notifier` console script."""

from notifier.cli.main import main

if __name__ == "__main__":
    main()
