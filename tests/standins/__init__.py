"""Loopback stand-ins for remote job services the tests cannot reach (no internet in tests).

``ibm_runtime.IBMStandIn`` plays IBM Quantum Platform (IAM, instance lookup and the
Qiskit Runtime REST API) so the real ``qiskit-ibm-runtime`` SDK can be driven over
HTTP on 127.0.0.1; ``ibm_fixtures`` holds the pytest fixtures that start it and
point the SDK at it.
"""
