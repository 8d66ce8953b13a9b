# Artifact Registry repository, runtime identity, Cloud Run service and invoker IAM of books-server.

locals {
  # Image pushed by the README's build commands into the repository below.
  default_image = "${var.region}-docker.pkg.dev/${var.project_id}/${var.repository_id}/books-server:${var.image_tag}"
  image         = coalesce(var.image, local.default_image)

  # Service account IDs are 6-30 characters: "<service_name>-sa", with the name cut to fit.
  service_account_id = "${substr(var.service_name, 0, 26)}-sa"
}

resource "google_artifact_registry_repository" "books" {
  project       = var.project_id
  location      = var.region
  repository_id = var.repository_id
  format        = "DOCKER"
  description   = "Container images of ${var.service_name}"
}

# Dedicated runtime identity. It gets no project roles: the memory: store needs no Google API,
# and Cloud Run collects stdout/stderr logs without roles on the service's account. Pulling the
# image from the same project's Artifact Registry is done by the Cloud Run service agent.
resource "google_service_account" "books" {
  project      = var.project_id
  account_id   = local.service_account_id
  display_name = "${var.service_name} (Cloud Run runtime)"
  description  = "Runtime identity of the ${var.service_name} Cloud Run service; holds no roles."
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

      env {
        name  = "BOOKS_STORE"
        value = var.books_store
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

      # grpc.health.v1.Health/Check with the empty service name: the server's overall status,
      # SERVING once the store is open and the port is bound. Up to 2 s x 30 = 60 s to start.
      startup_probe {
        initial_delay_seconds = 0
        period_seconds        = 2
        timeout_seconds       = 1
        failure_threshold     = 30
        grpc {
          port    = 8080
          service = ""
        }
      }

      # Restart the instance after three failed checks 15 s apart (NOT_SERVING or no answer).
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
  depends_on = [google_artifact_registry_repository.books]

  lifecycle {
    precondition {
      condition     = var.min_instance_count <= var.max_instance_count
      error_message = "min_instance_count must not be greater than max_instance_count."
    }
    precondition {
      condition     = !startswith(var.books_store, "memory:") || var.max_instance_count == 1 || var.allow_split_memory_store
      error_message = "With books_store = \"memory:\" every instance holds its own books, so max_instance_count must be 1. Use a shared store, or set allow_split_memory_store = true to accept split data."
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
