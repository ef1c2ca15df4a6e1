from floworch.testing.host import FlowTestHost

__all__ = ["FlowTestHost"]
