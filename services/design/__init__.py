"""The design service: projects and their memberships, designs and their revisions, whose
processing runs in worker processes (`python -m services.design`)."""
