"""The supply service: the supplier network, from facilities on (`python -m services.supply`)."""
