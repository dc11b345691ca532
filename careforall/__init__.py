"""CareForAll: a medical fundraising platform that never loses or doubles a donation."""

__version__ = "0.1.0"
