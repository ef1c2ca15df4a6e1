"""floworch: durable DAG workflows for Python, native to Azure Service Bus, with state in SQL."""
