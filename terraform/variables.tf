# Inputs of the books-server Cloud Run deployment. Only project_id is required.
#
# Rules that involve two variables (min <= max instances; how many instances each store allows;
# books_store agreeing with store; an existing Cloud SQL instance needing an existing secret) are
# lifecycle preconditions on google_cloud_run_v2_service.books in cloudrun.tf (and one on the
# Cloud SQL instance in database.tf), because validation blocks that refer to other variables need
# Terraform 1.9.

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
  description = "Minimum number of instances. 0 lets the service scale to zero when idle; with the memory and sqlite stores that also drops every book, so set 1 to keep the data while the service is idle (billed while idle). The postgresql and firestore stores keep the books in their database, so 0 loses nothing."
  type        = number
  default     = 0

  validation {
    condition     = var.min_instance_count >= 0 && floor(var.min_instance_count) == var.min_instance_count
    error_message = "min_instance_count must be a whole number >= 0."
  }
}

variable "max_instance_count" {
  description = "Maximum number of instances. Keep 1 with the default memory store (and with sqlite, where it is required): each instance holds its own books in its own memory, so more than one instance would split the data and answer differently depending on which instance a call reaches. Raise it only with store = \"postgresql\" or \"firestore\", where every instance shares one database (with postgresql each instance holds 1 + pool connections, 3 by default: keep max_instance_count x 3 under the Cloud SQL tier's connection limit; Firestore has no connection limit to watch). See allow_split_memory_store for load tests."
  type        = number
  default     = 1

  validation {
    condition     = var.max_instance_count >= 1 && floor(var.max_instance_count) == var.max_instance_count
    error_message = "max_instance_count must be a whole number >= 1."
  }
}

variable "allow_split_memory_store" {
  description = "Set true to allow max_instance_count > 1 while store = \"memory\", accepting that every instance keeps a separate set of books (for load tests only). Default false: such a plan fails."
  type        = bool
  default     = false
}

variable "accept_sqlite_data_loss" {
  description = "Set true to allow store = \"sqlite\". Cloud Run's container file system lives in the instance's memory, so the SQLite file dies with the instance (scale to zero, new revision, restart, host maintenance): the books are durable across crashes of the process only, never across instances. Default false: store = \"sqlite\" fails the plan. Even when true, max_instance_count must be 1."
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
  description = "Memory limit of the container (\"512Mi\", \"1Gi\", ...). With the memory store every book lives in this memory, and with the sqlite store the database file does too (Cloud Run's file system is in memory)."
  type        = string
  default     = "512Mi"

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi|M|G)$", var.memory))
    error_message = "memory must be a memory quantity such as \"512Mi\" or \"1Gi\"."
  }
}

variable "store" {
  description = "Which store the server uses. \"memory\" (default): the books live in one instance's memory and are lost when it stops; one instance. \"sqlite\": a SQLite file on the instance's in-memory file system; lost when the instance stops, so it needs accept_sqlite_data_loss = true and one instance. \"postgresql\": Cloud SQL for PostgreSQL through Cloud Run's Cloud SQL connection; durable and shared, so any number of instances. database.tf creates the Cloud SQL instance unless cloudsql_instance_connection_name names an existing one. \"firestore\": a Firestore database (Native mode) through Firestore's gRPC API as the service account; durable and shared, so any number of instances. firestore.tf creates the database unless firestore_create_database = false."
  type        = string
  default     = "memory"

  validation {
    condition     = contains(["memory", "sqlite", "postgresql", "firestore"], var.store)
    error_message = "store must be one of \"memory\", \"sqlite\", \"postgresql\", \"firestore\"."
  }
}

variable "books_store" {
  description = "Literal BOOKS_STORE for the memory and sqlite stores, to pass store parameters (e.g. \"sqlite:/var/lib/books/books.db?synchronous=normal\"); it must use the scheme of store. Default (null): \"memory:\", or \"sqlite:/var/lib/books/books.db\". Must stay null with store = \"postgresql\" and store = \"firestore\": the module builds those URIs itself (see postgresql_store_params and firestore_store_params for the stores' own parameters)."
  type        = string
  default     = null

  validation {
    # Not short-circuiting: regex() of null fails inside can(), which then gives false.
    condition     = var.books_store == null || can(regex("^[a-z][a-z0-9+.-]*:", var.books_store))
    error_message = "books_store must be null or a store URI that starts with a scheme and a colon, such as \"memory:\" or \"sqlite:/var/lib/books/books.db\"."
  }
  validation {
    # BOOKS_STORE is a plain environment variable, visible to anyone who can read the service.
    condition     = var.books_store == null || !can(regex("(?i)(://[^/?#@]*:[^/?#@]*@|[?&]password=)", var.books_store))
    error_message = "books_store must not contain a password: BOOKS_STORE is a plain environment variable. With store = \"postgresql\" the password comes from Secret Manager in PGPASSWORD."
  }
}

variable "postgresql_store_params" {
  description = "The postgresql store's own URI parameters, appended to the BOOKS_STORE the module builds: pool (reader connections per instance, default 2, plus one writer), statement_timeout_ms, startup_timeout_s (default 30), cache_mb, group_commit (on/off), silence_timeout_ms (default 5000: how long a call waits on a database that does not answer, e.g. during a Cloud SQL failover, before it fails fast). Example: { pool = \"4\" }."
  type        = map(string)
  default     = {}

  validation {
    # An allow-list, so that no libpq keyword (host, user, password, ...) can reach the URI.
    condition     = alltrue([for k, v in var.postgresql_store_params : contains(["pool", "statement_timeout_ms", "startup_timeout_s", "cache_mb", "group_commit", "silence_timeout_ms"], k) && can(regex("^[A-Za-z0-9_]+$", v))])
    error_message = "postgresql_store_params keys must be among pool, statement_timeout_ms, startup_timeout_s, cache_mb, group_commit, silence_timeout_ms, with values of letters, digits and '_'."
  }
}

variable "postgresql_database" {
  description = "Database the postgresql store uses; the module creates it on a Cloud SQL instance it creates. The server creates its own tables in it on first start."
  type        = string
  default     = "books"

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_]{0,62}$", var.postgresql_database))
    error_message = "postgresql_database must be 1 to 63 lowercase letters, digits or '_', not starting with a digit."
  }
}

variable "postgresql_user" {
  description = "Database user of the postgresql store (a built-in user with a password); the module creates it on a Cloud SQL instance it creates."
  type        = string
  default     = "books"

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_]{0,62}$", var.postgresql_user))
    error_message = "postgresql_user must be 1 to 63 lowercase letters, digits or '_', not starting with a digit."
  }
}

variable "cloudsql_instance_connection_name" {
  description = "Connection name (\"PROJECT:REGION:INSTANCE\") of an existing Cloud SQL for PostgreSQL instance to use with store = \"postgresql\", instead of creating one. Then postgresql_database and postgresql_user must already exist there, and postgresql_password_secret must name the secret holding that user's password. Default (null): database.tf creates the instance, database, user and secret."
  type        = string
  default     = null

  validation {
    # PROJECT may be domain-scoped ("example.com:project").
    condition     = var.cloudsql_instance_connection_name == null || can(regex("^([a-z][-a-z0-9.]*:)?[a-z][-a-z0-9]{4,28}[a-z0-9]:[a-z]+-[a-z]+[0-9]+:[a-z]([-a-z0-9]*[a-z0-9])?$", var.cloudsql_instance_connection_name))
    error_message = "cloudsql_instance_connection_name must be \"PROJECT:REGION:INSTANCE\", such as \"my-project:us-central1:books-pg\"."
  }
}

variable "postgresql_password_secret" {
  description = "With cloudsql_instance_connection_name: the existing Secret Manager secret holding postgresql_user's password, as \"SECRET\" (in project_id) or \"projects/PROJECT/secrets/SECRET\". The runtime service account is granted roles/secretmanager.secretAccessor on this secret only. Must be null when the module creates the instance (it creates the secret too)."
  type        = string
  default     = null

  validation {
    condition     = var.postgresql_password_secret == null || can(regex("^(projects/[^/]+/secrets/)?[A-Za-z0-9_-]{1,255}$", var.postgresql_password_secret))
    error_message = "postgresql_password_secret must be a secret ID (\"books-db-password\") or \"projects/PROJECT/secrets/SECRET\"."
  }
}

variable "postgresql_password_secret_version" {
  description = "Version of postgresql_password_secret that Cloud Run reads into PGPASSWORD when an instance starts: \"latest\" or a version number. Only for an existing secret; a secret the module creates is pinned to the version it wrote."
  type        = string
  default     = "latest"

  validation {
    condition     = can(regex("^(latest|[1-9][0-9]*)$", var.postgresql_password_secret_version))
    error_message = "postgresql_password_secret_version must be \"latest\" or a version number."
  }
}

variable "cloudsql_instance_name" {
  description = "Name of the Cloud SQL instance the module creates. Default (null): \"<service_name>-pg\". A deleted instance's name cannot be reused for about a week."
  type        = string
  default     = null

  validation {
    condition     = var.cloudsql_instance_name == null || can(regex("^[a-z][-a-z0-9]{0,78}[a-z0-9]$", var.cloudsql_instance_name))
    error_message = "cloudsql_instance_name must be 2 to 80 lowercase letters, digits or hyphens, start with a letter and not end with a hyphen."
  }
}

variable "cloudsql_database_version" {
  description = "PostgreSQL major version of the created Cloud SQL instance."
  type        = string
  default     = "POSTGRES_15"

  validation {
    condition     = can(regex("^POSTGRES_[0-9]+$", var.cloudsql_database_version))
    error_message = "cloudsql_database_version must be a Cloud SQL PostgreSQL version such as \"POSTGRES_15\"."
  }
}

variable "cloudsql_tier" {
  description = "Machine type of the created Cloud SQL instance. db-f1-micro (shared vCPU, 0.6 GB, 25 connections, no SLA) is the cheapest, enough for the default single instance and tests; db-g1-small (1.7 GB, 50 connections) or db-custom-1-3840 (dedicated vCPU, SLA) for real traffic. Shared-core and db-custom tiers need cloudsql_edition = \"ENTERPRISE\"."
  type        = string
  default     = "db-f1-micro"

  validation {
    condition     = can(regex("^db-[a-z0-9-]+$", var.cloudsql_tier))
    error_message = "cloudsql_tier must be a Cloud SQL tier such as \"db-f1-micro\", \"db-g1-small\" or \"db-custom-1-3840\"."
  }
}

variable "cloudsql_edition" {
  description = "Cloud SQL edition of the created instance. Set explicitly because PostgreSQL 16+ would otherwise default to ENTERPRISE_PLUS, which refuses the shared-core tiers."
  type        = string
  default     = "ENTERPRISE"

  validation {
    condition     = contains(["ENTERPRISE", "ENTERPRISE_PLUS"], var.cloudsql_edition)
    error_message = "cloudsql_edition must be \"ENTERPRISE\" or \"ENTERPRISE_PLUS\"."
  }
}

variable "cloudsql_availability_type" {
  description = "Availability of the created Cloud SQL instance. \"ZONAL\" (default): one instance in one zone, no failover; a zone outage or a failed instance means downtime until it recovers (or a restore from backup). \"REGIONAL\" (high availability): a standby instance in a second zone of the region, every write replicated synchronously to the disks of both zones before the commit is reported; when the primary has been unresponsive for about 60 seconds (or its zone is down) Cloud SQL fails over automatically: the standby becomes the primary behind the same static IP address and connection name, so nothing in the service changes; every open connection is dropped, the instance is unavailable for about sixty seconds (Google's figure), and the server reconnects by itself. Google charges an HA instance double the price of a standalone one, CPU, RAM and storage included (https://cloud.google.com/sql/docs/postgres/high-availability); with a shared-core tier (db-f1-micro, db-g1-small) it has no SLA. Needs cloudsql_point_in_time_recovery = true."
  type        = string
  default     = "ZONAL"

  validation {
    condition     = contains(["ZONAL", "REGIONAL"], var.cloudsql_availability_type)
    error_message = "cloudsql_availability_type must be \"ZONAL\" or \"REGIONAL\"."
  }
}

variable "cloudsql_disk_size_gb" {
  description = "Initial SSD size of the created instance, in GB (minimum 10). Storage grows automatically when nearly full and never shrinks; later changes to this variable are ignored once the instance exists."
  type        = number
  default     = 10

  validation {
    condition     = var.cloudsql_disk_size_gb >= 10 && floor(var.cloudsql_disk_size_gb) == var.cloudsql_disk_size_gb
    error_message = "cloudsql_disk_size_gb must be a whole number >= 10."
  }
}

variable "cloudsql_disk_autoresize_limit_gb" {
  description = "Largest size, in GB, that automatic storage increases may reach; 0 means no limit. A limit caps the storage bill, and once it is reached creates fail with RESOURCE_EXHAUSTED while reads go on."
  type        = number
  default     = 0

  validation {
    condition     = var.cloudsql_disk_autoresize_limit_gb >= 0 && floor(var.cloudsql_disk_autoresize_limit_gb) == var.cloudsql_disk_autoresize_limit_gb
    error_message = "cloudsql_disk_autoresize_limit_gb must be a whole number >= 0."
  }
}

variable "cloudsql_retained_backups" {
  description = "Number of daily automated backups the created instance keeps (backups are always on)."
  type        = number
  default     = 7

  validation {
    condition     = var.cloudsql_retained_backups >= 1 && var.cloudsql_retained_backups <= 365 && floor(var.cloudsql_retained_backups) == var.cloudsql_retained_backups
    error_message = "cloudsql_retained_backups must be a whole number from 1 to 365."
  }
}

variable "cloudsql_point_in_time_recovery" {
  description = "Keep the write-ahead log (7 days) so the created instance can be restored to any moment, not only to a daily backup. Costs the log's storage; required by REGIONAL availability."
  type        = bool
  default     = true
}

variable "cloudsql_private_network" {
  description = "VPC network (\"projects/PROJECT/global/networks/NETWORK\") for private IP. Default (null): the created instance gets a public IP with no authorized networks, reachable only through the Cloud SQL Auth Proxy path (IAM-checked, TLS) that Cloud Run's Cloud SQL connection uses; no VPC needed. Set: the created instance gets a private IP in this network and no public IP (the network needs private services access first), and the service sends private-range traffic into it through Direct VPC egress; Cloud Run's socket then reaches the instance over the private IP."
  type        = string
  default     = null

  validation {
    condition     = var.cloudsql_private_network == null || can(regex("^projects/[^/]+/global/networks/[^/]+$", var.cloudsql_private_network))
    error_message = "cloudsql_private_network must be \"projects/PROJECT/global/networks/NETWORK\"."
  }
}

variable "cloudsql_private_subnetwork" {
  description = "Subnetwork (in region) the service's Direct VPC egress takes its addresses from, with cloudsql_private_network. Default (null): the subnetwork named like the network."
  type        = string
  default     = null
}

variable "database_deletion_protection" {
  description = "Protect the created Cloud SQL instance (in Terraform and in the Cloud SQL API, against every client) and the password secret from deletion, and likewise the created Firestore database (delete_protection_state, in the Firestore API). Set false and apply before terraform destroy, or before switching store away from postgresql or firestore."
  type        = bool
  default     = true
}

variable "firestore_database" {
  description = "ID of the firestore store's database (BOOKS_STORE=firestore://PROJECT/ID). Default \"books\": a named database, created by the module, that cannot collide with a \"(default)\" database something else in the project already uses. \"(default)\" selects the project's default database (BOOKS_STORE=firestore://PROJECT); if it already exists, set firestore_create_database = false (or import it)."
  type        = string
  default     = "books"

  validation {
    # Firestore's rule: 4 to 63 of a-z, 0-9 and '-', starting with a letter, not ending with '-', not UUID-like.
    condition     = var.firestore_database == "(default)" || (can(regex("^[a-z][a-z0-9-]{2,61}[a-z0-9]$", var.firestore_database)) && !can(regex("^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$", var.firestore_database)))
    error_message = "firestore_database must be \"(default)\" or 4 to 63 lowercase letters, digits or hyphens, starting with a letter, not ending with a hyphen and not shaped like a UUID."
  }
}

variable "firestore_create_database" {
  description = "With store = \"firestore\": create the database firestore_database (default true). false uses an existing Native-mode database of that ID in project_id: the module then only enables the API and grants the runtime account roles/datastore.user on it."
  type        = bool
  default     = true
}

variable "firestore_location" {
  description = "Location of the created Firestore database, fixed once created (changing it replaces the database, i.e. fails while it is protected). Default (null): region, the service's own region (regional pricing, 99.99% SLA, the service's calls stay in the region). A multi-region such as \"nam5\" (United States) or \"eur3\" (Europe) survives the loss of a region (99.999% SLA) at a higher price per operation and per GB (https://cloud.google.com/firestore/pricing), with slightly slower writes. Not every Cloud Run region is a Firestore location: see https://cloud.google.com/firestore/docs/locations."
  type        = string
  default     = null

  validation {
    condition     = var.firestore_location == null || can(regex("^([a-z]+-[a-z]+[0-9]+|nam[0-9]+|eur[0-9]+)$", var.firestore_location))
    error_message = "firestore_location must be null (the service's region), a region such as \"us-central1\", or a multi-region such as \"nam5\" or \"eur3\"."
  }
}

variable "firestore_point_in_time_recovery" {
  description = "Point-in-time recovery of the created Firestore database: every version of the last 7 days stays readable (at 1-minute granularity beyond the last hour), to recover from a bad write or deletion. Billed as extra storage; off, only the last hour is kept."
  type        = bool
  default     = true
}

variable "firestore_store_params" {
  description = "The firestore store's own URI parameters, appended to the BOOKS_STORE the module builds: collection (default books), cache_mb, group_commit (on/off), timeout_ms, startup_timeout_s, max_request_bytes (default 9437184, the most bytes of one BatchWrite or Commit; Firestore refuses requests over 10 MiB). startup_timeout_s is always in the URI: 210 by default, the most that fits in Cloud Run's startup probe (240 s, see cloudrun.tf), which covers the typical 2 minutes of IAM propagation on a first apply; a value may lower it, not raise it. Example: { collection = \"books_v2\", timeout_ms = \"5000\" }."
  type        = map(string)
  default     = {}

  validation {
    # An allow-list, like postgresql_store_params: nothing else can reach the URI.
    condition     = alltrue([for k, v in var.firestore_store_params : contains(["collection", "cache_mb", "group_commit", "timeout_ms", "startup_timeout_s", "max_request_bytes"], k) && can(regex("^[A-Za-z0-9_-]+$", v))])
    error_message = "firestore_store_params keys must be among collection, cache_mb, group_commit, timeout_ms, startup_timeout_s, max_request_bytes, with values of letters, digits, '_' and '-'."
  }

  validation {
    # A number of seconds (the upper bound is a precondition of the service, in cloudrun.tf).
    condition     = can(regex("^[0-9]{1,4}$", lookup(var.firestore_store_params, "startup_timeout_s", "0")))
    error_message = "firestore_store_params.startup_timeout_s must be a whole number of seconds."
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
