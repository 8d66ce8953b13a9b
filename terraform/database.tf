# The postgresql store's database: a Cloud SQL for PostgreSQL instance, the database and user the
# server connects as, and the user's generated password in Secret Manager, readable by the
# service's runtime account alone. All of it only with store = "postgresql" and no existing
# instance (cloudsql_instance_connection_name); with an existing instance, only the secret's
# IAM grant below is made, on the secret given in postgresql_password_secret.
#
# Authentication is a password, not IAM database authentication: Cloud Run's built-in Cloud SQL
# connection gives a socket to a plain PostgreSQL login, and with IAM users that login's password
# is an OAuth2 access token that expires within the hour. libpq reads PGPASSWORD once per
# connection and the server reconnects on its own, so the token would have to be refreshed beside
# it (a Cloud SQL Auth Proxy sidecar with --auto-iam-authn instead of the built-in connection).
# A random password kept in Secret Manager works with the built-in connection as it is.

locals {
  cloudsql_instance_name = coalesce(var.cloudsql_instance_name, "${var.service_name}-pg")
}

resource "google_sql_database_instance" "books" {
  count = local.create_cloudsql ? 1 : 0

  project          = var.project_id
  region           = var.region
  name             = local.cloudsql_instance_name
  database_version = var.cloudsql_database_version
  # Terraform-side protection: a plan that would delete the instance fails.
  deletion_protection = var.database_deletion_protection

  settings {
    tier              = var.cloudsql_tier
    edition           = var.cloudsql_edition
    availability_type = var.cloudsql_availability_type
    # API-side protection: no client (console, gcloud, API) can delete the instance either.
    deletion_protection_enabled = var.database_deletion_protection

    disk_type             = "PD_SSD"
    disk_size             = var.cloudsql_disk_size_gb
    disk_autoresize       = true
    disk_autoresize_limit = var.cloudsql_disk_autoresize_limit_gb

    # Backups are not optional: this is where the books live.
    backup_configuration {
      enabled                        = true
      point_in_time_recovery_enabled = var.cloudsql_point_in_time_recovery
      backup_retention_settings {
        retained_backups = var.cloudsql_retained_backups
        retention_unit   = "COUNT"
      }
    }

    ip_configuration {
      # Public IP with no authorized networks: no direct connection is accepted from anywhere;
      # the Cloud SQL Auth Proxy path (IAM-authorized, TLS), which Cloud Run's connection uses,
      # is. With a private network, the instance has only a private IP there.
      ipv4_enabled    = var.cloudsql_private_network == null
      private_network = var.cloudsql_private_network
      ssl_mode        = "ENCRYPTED_ONLY"
      # Cloud SQL's connection guides require the per-instance CA for instances that Cloud Run
      # (and other serverless clients) connect to.
      server_ca_mode = "GOOGLE_MANAGED_INTERNAL_CA"
    }
  }

  lifecycle {
    # Storage grows automatically and cannot shrink; the provider would otherwise try to put the
    # disk back to cloudsql_disk_size_gb by replacing the instance.
    ignore_changes = [settings[0].disk_size]

    precondition {
      condition     = var.cloudsql_availability_type != "REGIONAL" || var.cloudsql_point_in_time_recovery
      error_message = "cloudsql_availability_type = \"REGIONAL\" needs cloudsql_point_in_time_recovery = true (Cloud SQL's requirement for PostgreSQL high availability)."
    }
  }
}

resource "google_sql_database" "books" {
  count = local.create_cloudsql ? 1 : 0

  project  = var.project_id
  instance = google_sql_database_instance.books[0].name
  name     = var.postgresql_database
  # Removing the database from the configuration (switching store) must not drop the books with
  # it; deleting the instance, deliberately, removes it anyway.
  deletion_policy = "ABANDON"
}

# 32 letters and digits (about 190 bits): nothing to quote in libpq or a shell.
resource "random_password" "db_password" {
  count = local.create_cloudsql ? 1 : 0

  length  = 32
  special = false
}

# A built-in PostgreSQL user. Cloud SQL makes users it creates members of cloudsqlsuperuser, which
# owns the databases it creates: the server can create its tables in the public schema
# (PostgreSQL 15 grants CREATE there to the database owner only).
resource "google_sql_user" "books" {
  count = local.create_cloudsql ? 1 : 0

  project  = var.project_id
  instance = google_sql_database_instance.books[0].name
  name     = var.postgresql_user
  password = random_password.db_password[0].result
  # The user owns the server's tables, so PostgreSQL refuses to drop it while they exist; the
  # instance's deletion removes it.
  deletion_policy = "ABANDON"
}

resource "google_secret_manager_secret" "db_password" {
  count = local.create_cloudsql ? 1 : 0

  project   = var.project_id
  secret_id = "${var.service_name}-db-password"
  # Survives a plan that removes the instance's other resources, while the instance's own
  # deletion protection stops the plan.
  deletion_protection = var.database_deletion_protection

  replication {
    auto {}
  }
}

# The password is in Terraform's state (as random_password's result and here), as with any module
# that generates one: keep the state in a protected backend.
resource "google_secret_manager_secret_version" "db_password" {
  count = local.create_cloudsql ? 1 : 0

  secret      = google_secret_manager_secret.db_password[0].id
  secret_data = random_password.db_password[0].result
}

# Read access to this one secret for the runtime account, whether created above or existing.
resource "google_secret_manager_secret_iam_member" "db_password" {
  count = local.postgresql ? 1 : 0

  secret_id = local.create_cloudsql ? google_secret_manager_secret.db_password[0].id : var.postgresql_password_secret
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.books.email}"

  lifecycle {
    # Checked here as well as on the service: this resource is planned first.
    precondition {
      condition     = local.create_cloudsql || var.postgresql_password_secret != null
      error_message = "With cloudsql_instance_connection_name set, postgresql_password_secret must name the secret holding postgresql_user's password."
    }
  }
}
