"""The runner: command line, run settings, devices, run folders and snapshots, above the algorithms."""
