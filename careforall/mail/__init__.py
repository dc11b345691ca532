"""Mail: the wording (Jinja2 templates) and the SMTP client."""
