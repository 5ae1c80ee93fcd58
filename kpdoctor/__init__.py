"""kpdoctor: a doctor for Kubernetes Service networking (kube-proxy)."""

__version__ = "0.1.0"
