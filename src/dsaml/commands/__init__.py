"""The `dsaml` sub-commands' argument parsing and console output, one module per sub-command (see `dsaml.cli`)."""
