"""The daemon process: loop, claim, scan, runner, step processes, executors."""
