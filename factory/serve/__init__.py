"""Serving: the classify path used in production and in the speed benchmark."""
