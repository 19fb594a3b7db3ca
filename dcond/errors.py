class DcondError(Exception):
    """An error the user caused and can fix: the CLI prints it as one line, without a traceback."""
