"""Apache Airflow provider for machine-to-machine auth."""

__version__ = "0.1.0"
