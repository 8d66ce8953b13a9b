# Artifact Registry repository, runtime identity, Cloud Run service and invoker IAM of books-server,
# and what the service needs from the store it runs with.

locals {
  # Image pushed by the README's build commands into the repository below.
  default_image = "${var.region}-docker.pkg.dev/${var.project_id}/${var.repository_id}/books-server:${var.image_tag}"
  image         = coalesce(var.image, local.default_image)

  # Service account IDs are 6-30 characters: "<service_name>-sa", with the name cut to fit.
  service_account_id = "${substr(var.service_name, 0, 26)}-sa"

  postgresql = var.store == "postgresql"
  firestore  = var.store == "firestore"
  # Cloud SQL objects are created unless an existing instance is named.
  create_cloudsql = local.postgresql && var.cloudsql_instance_connection_name == null

  # "PROJECT:REGION:INSTANCE". Cloud Run's Cloud SQL volume, mounted at /cloudsql, puts the
  # instance's PostgreSQL socket in /cloudsql/PROJECT:REGION:INSTANCE (as .s.PGSQL.5432, which
  # libpq finds from host= the directory). Only the selected branch of a conditional is evaluated,
  # so [0] is safe while the instance has count = 0.
  cloudsql_connection_name = local.create_cloudsql ? google_sql_database_instance.books[0].connection_name : var.cloudsql_instance_connection_name
  cloudsql_socket_dir      = "/cloudsql/${coalesce(local.cloudsql_connection_name, "none")}"
  # roles/cloudsql.client is needed in the instance's project: all but the last two parts of the
  # connection name (a domain-scoped project ID, "example.com:project", has a colon of its own).
  existing_connection_parts = split(":", coalesce(var.cloudsql_instance_connection_name, "-:-:-"))
  cloudsql_project          = local.create_cloudsql ? var.project_id : join(":", slice(local.existing_connection_parts, 0, length(local.existing_connection_parts) - 2))

  # The password's secret: created in database.tf, or an existing one. Cloud Run puts the version
  # into PGPASSWORD, which libpq reads when BOOKS_STORE has no password (it never has one).
  password_secret         = local.create_cloudsql ? google_secret_manager_secret.db_password[0].secret_id : var.postgresql_password_secret
  password_secret_version = local.create_cloudsql ? google_secret_manager_secret_version.db_password[0].version : var.postgresql_password_secret_version

  # libpq URI over the socket: no host name, no port, no password; the store's own parameters last.
  postgresql_uri = "postgresql:///${var.postgresql_database}?host=${local.cloudsql_socket_dir}&user=${var.postgresql_user}${join("", [for k, v in var.postgresql_store_params : "&${k}=${v}"])}"

  # Cloud Run's startup probe (below): the instance must answer grpc.health.v1.Health within
  # failure_threshold x period_seconds of its start, which Cloud Run's health-check guides cap at
  # 240 s (the API caps period_seconds and initial_delay_seconds at 240 too), or it is shut down.
  # The server binds its port only once its store is open, so this window is the store's whole
  # start-up budget. initial_delay_seconds stays 0: it would delay every cold start.
  startup_probe_period_s          = 2
  startup_probe_failure_threshold = local.firestore ? 120 : 30
  startup_probe_window_s          = local.startup_probe_period_s * local.startup_probe_failure_threshold

  # firestore: at start-up the store waits out PERMISSION_DENIED and UNAUTHENTICATED for
  # startup_timeout_s, which on a first apply covers the propagation of the runtime account's new
  # roles/datastore.user (typically 2 minutes, Google says, potentially 7 or longer). The server's
  # own default (600 s) is longer than the probe allows, so the URI always carries a value that ends
  # inside the window, 30 s before it closes: room for the process start and a last Firestore call
  # (timeout_ms, 10 s by default). Then the server exits with a message naming the role, rather than
  # being stopped by the probe in silence.
  firestore_startup_timeout_max_s = local.startup_probe_window_s - 30
  firestore_params                = merge({ startup_timeout_s = tostring(local.firestore_startup_timeout_max_s) }, var.firestore_store_params)

  # firestore://PROJECT/DATABASE, or firestore://PROJECT for the "(default)" database; then the
  # store's own parameters (cache_mb, collection, group_commit, startup_timeout_s, timeout_ms), keys
  # in lexical order.
  firestore_uri = join("", [
    "firestore://${var.project_id}",
    var.firestore_database == "(default)" ? "" : "/${var.firestore_database}",
    "?${join("&", [for k, v in local.firestore_params : "${k}=${v}"])}",
  ])

  # BOOKS_STORE of each store. sqlite: the image's WORKDIR, owned by the server's user; Cloud Run's
  # file system is in memory, hence accept_sqlite_data_loss.
  books_store = {
    memory     = coalesce(var.books_store, "memory:")
    sqlite     = coalesce(var.books_store, "sqlite:/var/lib/books/books.db")
    postgresql = local.postgresql_uri
    firestore  = local.firestore_uri
  }[var.store]
}

resource "google_artifact_registry_repository" "books" {
  project       = var.project_id
  location      = var.region
  repository_id = var.repository_id
  format        = "DOCKER"
  description   = "Container images of ${var.service_name}"
}

# Dedicated runtime identity. The memory and sqlite stores need no Google API and Cloud Run
# collects stdout/stderr logs without roles on the service's account, so it holds nothing then.
# Pulling the image from the same project's Artifact Registry is done by the Cloud Run service
# agent. With the postgresql store it gets roles/cloudsql.client below and, in database.tf,
# roles/secretmanager.secretAccessor on the password's secret alone; with the firestore store,
# roles/datastore.user below, on the one database.
resource "google_service_account" "books" {
  project      = var.project_id
  account_id   = local.service_account_id
  display_name = "${var.service_name} (Cloud Run runtime)"
  description  = "Runtime identity of the ${var.service_name} Cloud Run service; with the postgresql store, Cloud SQL Client and access to the database password secret only; with the firestore store, Cloud Datastore User on its database only."
}

# Cloud Run's Cloud SQL connection authorizes the revision's service account: it needs
# cloudsql.instances.connect and .get on the instance, i.e. Cloud SQL Client on its project (the
# role cannot be granted on one instance).
resource "google_project_iam_member" "cloudsql_client" {
  count = local.postgresql ? 1 : 0

  project = local.cloudsql_project
  role    = "roles/cloudsql.client"
  member  = "serviceAccount:${google_service_account.books.email}"
}

# The firestore store reads and writes documents as the runtime account (Application Default
# Credentials from the metadata server): roles/datastore.user (entities get/list/create/update/
# delete, begin/commit/rollback transactions; no index or database administration). The role is
# granted on the project, as Firestore databases have no IAM policy of their own, with an IAM
# condition that limits it to this store's database (Firestore's per-database access control).
resource "google_project_iam_member" "datastore_user" {
  count = local.firestore ? 1 : 0

  project = var.project_id
  role    = "roles/datastore.user"
  member  = "serviceAccount:${google_service_account.books.email}"

  condition {
    title       = "${var.service_name} Firestore database only"
    description = "Only the Firestore database of the ${var.service_name} Cloud Run service."
    expression  = "resource.name == \"projects/${var.project_id}/databases/${var.firestore_database}\""
  }
}

resource "google_cloud_run_v2_service" "books" {
  project             = var.project_id
  location            = var.region
  name                = var.service_name
  ingress             = "INGRESS_TRAFFIC_ALL"
  deletion_protection = var.deletion_protection

  template {
    service_account                  = google_service_account.books.email
    max_instance_request_concurrency = var.max_instance_request_concurrency
    timeout                          = var.request_timeout

    scaling {
      min_instance_count = var.min_instance_count
      max_instance_count = var.max_instance_count
    }

    # postgresql: Cloud Run's built-in Cloud SQL connection (the Cloud SQL Auth Proxy, run by
    # Cloud Run: TLS to the instance, authorized by the service account's IAM roles).
    dynamic "volumes" {
      for_each = local.postgresql ? [local.cloudsql_connection_name] : []
      content {
        name = "cloudsql"
        cloud_sql_instance {
          instances = [volumes.value]
        }
      }
    }

    # A private-IP instance is reached through Direct VPC egress; only private ranges take it,
    # so the connection's calls to Google APIs keep their usual path.
    dynamic "vpc_access" {
      for_each = local.postgresql && var.cloudsql_private_network != null ? [1] : []
      content {
        egress = "PRIVATE_RANGES_ONLY"
        network_interfaces {
          network    = var.cloudsql_private_network
          subnetwork = var.cloudsql_private_subnetwork
        }
      }
    }

    containers {
      name  = "books-server"
      image = local.image

      # "h2c" makes Cloud Run forward requests as cleartext HTTP/2 end to end, which gRPC needs.
      # Cloud Run passes this port to the container in PORT (the server listens on $PORT), so
      # PORT is never set in env below; the probes check the same port.
      ports {
        name           = "h2c"
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = var.cpu
          memory = var.memory
        }
        # CPU only while serving requests (the Cloud Run default, which must be set explicitly
        # once a resources block is given), and a CPU boost while the instance starts.
        cpu_idle          = true
        startup_cpu_boost = true
      }

      # The store URI holds no password, whichever the store (see local.books_store).
      env {
        name  = "BOOKS_STORE"
        value = local.books_store
      }
      # postgresql: the database password, read by Cloud Run from Secret Manager when an instance
      # starts; it never appears in the service's configuration.
      dynamic "env" {
        for_each = local.postgresql ? [1] : []
        content {
          name = "PGPASSWORD"
          value_source {
            secret_key_ref {
              secret  = local.password_secret
              version = local.password_secret_version
            }
          }
        }
      }
      env {
        name  = "BOOKS_LOG_LEVEL"
        value = var.log_level
      }
      # Used by the server to write Cloud Logging trace ids (projects/PROJECT/traces/TRACE).
      env {
        name  = "GOOGLE_CLOUD_PROJECT"
        value = var.project_id
      }

      # Mount path fixed by Cloud Run for Cloud SQL volumes; local.cloudsql_socket_dir is below it.
      dynamic "volume_mounts" {
        for_each = local.postgresql ? [1] : []
        content {
          name       = "cloudsql"
          mount_path = "/cloudsql"
        }
      }

      # grpc.health.v1.Health/Check with the empty service name: the server's overall status,
      # SERVING once the store is open and the port is bound. Up to 2 s x 30 = 60 s to start,
      # above the postgresql store's own 30 s of connection retries at start-up
      # (startup_timeout_s); with the firestore store 2 s x 120 = 240 s, Cloud Run's maximum, for
      # its wait on a role still propagating (local.firestore_startup_timeout_max_s). Not
      # "books.v1.BooksService": that one reports whether the database is reachable, and a
      # database outage must not make Cloud Run kill every instance.
      startup_probe {
        initial_delay_seconds = 0
        period_seconds        = local.startup_probe_period_s
        timeout_seconds       = 1
        failure_threshold     = local.startup_probe_failure_threshold
        grpc {
          port    = 8080
          service = ""
        }
      }

      # Restart the instance after three failed checks 15 s apart (NOT_SERVING or no answer).
      # Also the process status (""): it stays SERVING while the database is down.
      liveness_probe {
        initial_delay_seconds = 0
        period_seconds        = 15
        timeout_seconds       = 3
        failure_threshold     = 3
        grpc {
          port    = 8080
          service = ""
        }
      }
    }
  }

  traffic {
    type    = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
    percent = 100
  }

  # The default image lives in the repository above (pushed between two applies, see README.md).
  # A revision fails to deploy when its account cannot yet read the secret or reach the instance,
  # and the server needs its database and user at start-up: all of them come first. Likewise the
  # Firestore database, its API and the account's role on it.
  depends_on = [
    google_artifact_registry_repository.books,
    google_project_iam_member.cloudsql_client,
    google_secret_manager_secret_iam_member.db_password,
    google_sql_database.books,
    google_sql_user.books,
    google_project_service.firestore,
    google_firestore_database.books,
    google_project_iam_member.datastore_user,
  ]

  lifecycle {
    precondition {
      condition     = var.min_instance_count <= var.max_instance_count
      error_message = "min_instance_count must not be greater than max_instance_count."
    }
    precondition {
      condition     = var.store != "memory" || var.max_instance_count == 1 || var.allow_split_memory_store
      error_message = "With store = \"memory\" every instance holds its own books, so max_instance_count must be 1. Use store = \"postgresql\" or \"firestore\" (shared), or set allow_split_memory_store = true to accept split data."
    }
    # Cloud Run's file system is the instance's memory: the SQLite file goes with the instance.
    precondition {
      condition     = var.store != "sqlite" || var.accept_sqlite_data_loss
      error_message = "store = \"sqlite\" keeps the database file on Cloud Run's in-memory file system, so every book is lost when the instance stops. Use store = \"postgresql\" or \"firestore\" for durable books, or set accept_sqlite_data_loss = true to accept the loss."
    }
    precondition {
      condition     = var.store != "sqlite" || var.max_instance_count == 1
      error_message = "With store = \"sqlite\" every instance has its own database file, so max_instance_count must be 1."
    }
    precondition {
      condition     = var.books_store == null || (var.store == "memory" && startswith(coalesce(var.books_store, "-"), "memory:")) || (var.store == "sqlite" && (startswith(coalesce(var.books_store, "-"), "sqlite:") || startswith(coalesce(var.books_store, "-"), "file:")))
      error_message = "books_store must use the scheme of store (memory: or sqlite:/file:), and must be null with store = \"postgresql\" or \"firestore\" (the module builds those URIs; see postgresql_store_params and firestore_store_params)."
    }
    # A firestore start-up wait longer than the probe's window would be cut short by Cloud Run.
    precondition {
      condition     = tonumber(local.firestore_params.startup_timeout_s) <= local.firestore_startup_timeout_max_s
      error_message = "firestore_store_params.startup_timeout_s must be at most ${local.firestore_startup_timeout_max_s}: the startup probe stops an instance that has not answered within ${local.startup_probe_window_s} s (Cloud Run's maximum is 240 s), and the server binds its port only after the store has opened."
    }
    precondition {
      condition     = (var.cloudsql_instance_connection_name == null) == (var.postgresql_password_secret == null)
      error_message = "cloudsql_instance_connection_name and postgresql_password_secret go together: an existing instance needs the existing secret holding its user's password, and a created instance gets a created secret."
    }
  }
}

# roles/run.invoker for each listed principal (callers send an identity token).
resource "google_cloud_run_v2_service_iam_member" "invokers" {
  for_each = toset(var.invoker_members)

  project  = google_cloud_run_v2_service.books.project
  location = google_cloud_run_v2_service.books.location
  name     = google_cloud_run_v2_service.books.name
  role     = "roles/run.invoker"
  member   = each.value
}

# Public access, only when asked for. An organization policy (domain restricted sharing) may forbid it.
resource "google_cloud_run_v2_service_iam_member" "public" {
  count = var.allow_unauthenticated ? 1 : 0

  project  = google_cloud_run_v2_service.books.project
  location = google_cloud_run_v2_service.books.location
  name     = google_cloud_run_v2_service.books.name
  role     = "roles/run.invoker"
  member   = "allUsers"
}
