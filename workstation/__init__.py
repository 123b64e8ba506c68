"""IAD Workstation: labeling and active learning for industrial visual anomaly detection."""

__version__ = "0.1.0"
