"""Use-cases and read models behind the commands, without argparse."""
