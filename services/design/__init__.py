"""The design service: projects and their memberships, designs (`python -m services.design`)."""
