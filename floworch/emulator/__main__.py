"""``python -m floworch.emulator``: the same as ``floworch emulator``."""

from floworch.emulator.cli import emulator_command

if __name__ == "__main__":
    emulator_command(prog_name="python -m floworch.emulator")
