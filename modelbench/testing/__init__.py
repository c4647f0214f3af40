"""Test doubles that are real servers: shipped, so that tests, benchmarks and users' dry runs
(`python -m modelbench.testing.mock_server`) stand up the same peer. Nothing at run time imports
this package."""
