"""A study team's shared record on one machine: PostgreSQL, an S3 store and MLflow with basic auth (`crossmed tracking`)."""
