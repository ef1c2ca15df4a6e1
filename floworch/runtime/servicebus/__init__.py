"""The Azure Service Bus runtime: step dispatcher, message processor, cron hub, trigger queue and
topology manager. Needs the ``servicebus`` extra (``pip install floworch[servicebus]``).

Submodules import the Azure SDK; this package module does not, so ``floworch`` stays importable
without the extra.
"""
