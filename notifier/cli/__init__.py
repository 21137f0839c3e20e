"""The command line: `notifier run | check | send | ...`."""
