"""Helpers shared by the test modules (servers, fakes); never imported by Hub itself."""
