"""A local Salesforce API emulator: OAuth token endpoint, REST API and Bulk API 2.0 over HTTPS."""

from airflow_provider_m2m.sandbox.salesforce.emulator import SalesforceEmulator
from airflow_provider_m2m.sandbox.salesforce.oauth import ConnectedApp
from airflow_provider_m2m.sandbox.salesforce.objects import CUSTOMER_ACCOUNT, RECONCILIATION_RUN

__all__ = ["CUSTOMER_ACCOUNT", "RECONCILIATION_RUN", "ConnectedApp", "SalesforceEmulator"]
