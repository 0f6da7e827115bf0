"""What several test modules share: hand-built jobs, records, calibrations and process checks.
A test module imports these from here, never from another test module."""
