"""The daemon process: loop, claim, scan, runner (attempt, budget, writeback), step
processes (child, executors/), reflectors, cron firing, wake-ups, sd_notify."""
