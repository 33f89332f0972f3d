"""The reference job service: protocol v1 over HTTP (``jobledger serve``)."""
