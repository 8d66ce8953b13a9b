# Inputs of the books-server Cloud Run deployment. Only project_id is required.
#
# Rules that involve two variables (min <= max instances; one instance with a memory: store)
# are lifecycle preconditions on google_cloud_run_v2_service.books in cloudrun.tf, because
# validation blocks that refer to other variables need Terraform 1.9.

variable "project_id" {
  description = "Google Cloud project ID to deploy into (for example \"my-project-123\")."
  type        = string

  validation {
    condition     = can(regex("^[a-z][-a-z0-9]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project ID: 6 to 30 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "region" {
  description = "Region of the Cloud Run service and of the Artifact Registry repository (for example \"us-central1\")."
  type        = string
  default     = "us-central1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a Google Cloud region name such as \"us-central1\" or \"europe-west1\"."
  }
}

variable "service_name" {
  description = "Name of the Cloud Run service. The runtime service account is named after it (\"<name>-sa\", cut to fit)."
  type        = string
  default     = "books-server"

  validation {
    condition     = can(regex("^[a-z][-a-z0-9]{1,47}[a-z0-9]$", var.service_name))
    error_message = "service_name must be 3 to 49 lowercase letters, digits or hyphens, start with a letter and not end with a hyphen."
  }
}

variable "repository_id" {
  description = "ID of the Artifact Registry Docker repository created for the image."
  type        = string
  default     = "books"

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$", var.repository_id))
    error_message = "repository_id must be 1 to 63 lowercase letters, digits or hyphens, start with a letter and not end with a hyphen."
  }
}

variable "image_tag" {
  description = "Tag of the books-server image in the repository, used when image is not set. Prefer a unique tag (a git commit) to \"latest\": Cloud Run starts a new revision only when the image reference changes."
  type        = string
  default     = "latest"

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag))
    error_message = "image_tag must be a Docker tag: up to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'."
  }
}

variable "image" {
  description = "Full image reference to deploy. Default (null): \"<region>-docker.pkg.dev/<project_id>/<repository_id>/books-server:<image_tag>\", the image pushed to the repository this module creates."
  type        = string
  default     = null

  validation {
    condition     = var.image == null || can(regex("^[^\\s]+$", var.image))
    error_message = "image must be a non-empty image reference without spaces, or null for the default."
  }
}

variable "min_instance_count" {
  description = "Minimum number of instances. 0 lets the service scale to zero when idle; with the memory: store that also drops every book, so set 1 to keep the data while the service is idle (billed while idle)."
  type        = number
  default     = 0

  validation {
    condition     = var.min_instance_count >= 0 && floor(var.min_instance_count) == var.min_instance_count
    error_message = "min_instance_count must be a whole number >= 0."
  }
}

variable "max_instance_count" {
  description = "Maximum number of instances. Keep 1 with the default memory: store: each instance holds its own books in its own memory, so more than one instance would split the data and answer differently depending on which instance a call reaches. Raise it only with a shared store (see allow_split_memory_store)."
  type        = number
  default     = 1

  validation {
    condition     = var.max_instance_count >= 1 && floor(var.max_instance_count) == var.max_instance_count
    error_message = "max_instance_count must be a whole number >= 1."
  }
}

variable "allow_split_memory_store" {
  description = "Set true to allow max_instance_count > 1 while books_store is memory:, accepting that every instance keeps a separate set of books (for load tests only). Default false: such a plan fails."
  type        = bool
  default     = false
}

variable "max_instance_request_concurrency" {
  description = "Maximum number of concurrent requests (gRPC calls) one instance receives."
  type        = number
  default     = 80

  validation {
    condition     = var.max_instance_request_concurrency >= 1 && var.max_instance_request_concurrency <= 1000 && floor(var.max_instance_request_concurrency) == var.max_instance_request_concurrency
    error_message = "max_instance_request_concurrency must be a whole number from 1 to 1000."
  }
}

variable "request_timeout" {
  description = "Longest time Cloud Run lets a request (a gRPC call) run, as a duration in seconds ending in \"s\", at most \"3600s\"."
  type        = string
  default     = "30s"

  validation {
    condition     = can(regex("^[0-9]+(\\.[0-9]{1,9})?s$", var.request_timeout)) && try(tonumber(trimsuffix(var.request_timeout, "s")) > 0 && tonumber(trimsuffix(var.request_timeout, "s")) <= 3600, false)
    error_message = "request_timeout must be a duration such as \"30s\" or \"2.5s\", greater than 0 and at most \"3600s\"."
  }
}

variable "cpu" {
  description = "CPU limit of the container (\"1\", \"2\", \"4\", ...). CPU is allocated only while requests are being served."
  type        = string
  default     = "1"

  validation {
    condition     = can(regex("^([0-9]+(\\.[0-9]+)?|[0-9]+m)$", var.cpu))
    error_message = "cpu must be a CPU quantity such as \"1\", \"2\" or \"1000m\"."
  }
}

variable "memory" {
  description = "Memory limit of the container (\"512Mi\", \"1Gi\", ...). With the memory: store, every book lives in this memory."
  type        = string
  default     = "512Mi"

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi|M|G)$", var.memory))
    error_message = "memory must be a memory quantity such as \"512Mi\" or \"1Gi\"."
  }
}

variable "books_store" {
  description = "BOOKS_STORE of the server: the store URI. \"memory:\" keeps the books in the instance's memory only: they are lost when the instance stops (scale to zero, new revision, restart)."
  type        = string
  default     = "memory:"

  validation {
    condition     = can(regex("^[a-z][a-z0-9+.-]*:", var.books_store))
    error_message = "books_store must be a store URI that starts with a scheme and a colon, such as \"memory:\"."
  }
}

variable "log_level" {
  description = "BOOKS_LOG_LEVEL of the server: one of debug, info, warning, error."
  type        = string
  default     = "info"

  validation {
    condition     = contains(["debug", "info", "warning", "error"], var.log_level)
    error_message = "log_level must be one of \"debug\", \"info\", \"warning\", \"error\"."
  }
}

variable "invoker_members" {
  description = "Principals granted roles/run.invoker on the service, e.g. [\"user:alice@example.com\", \"serviceAccount:client@my-project.iam.gserviceaccount.com\", \"group:team@example.com\"]. Public access is allow_unauthenticated, not an entry here."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for m in var.invoker_members : can(regex("^(user|serviceAccount|group|domain|principal|principalSet):.+$", m))])
    error_message = "Each invoker_members entry must be an IAM principal such as \"user:EMAIL\", \"serviceAccount:EMAIL\", \"group:EMAIL\" or \"domain:DOMAIN\"; for public access set allow_unauthenticated = true instead of listing allUsers."
  }
}

variable "allow_unauthenticated" {
  description = "Grant roles/run.invoker to allUsers, so anyone on the internet can call the service without an identity token. Default false: callers need an identity token of an invoker_members principal."
  type        = bool
  default     = false
}

variable "deletion_protection" {
  description = "Provider-side deletion protection of the Cloud Run service (the provider's default is true). Set false and apply before terraform destroy, or before a change that replaces the service."
  type        = bool
  default     = true
}
