"""The supply service: the supplier network, starting with facilities (`python -m services.supply`)."""
