# The firestore store's database: a Firestore database in Native mode, reached by the server through
# Firestore's gRPC API (firestore.googleapis.com) with Application Default Credentials, which on
# Cloud Run are the runtime service account's, from the metadata server. Only with
# store = "firestore". Nothing here has a password: the service account's IAM role is the only
# credential, and Cloud Run refreshes its tokens.
#
# The database is created unless firestore_create_database = false names an existing one (the
# project's "(default)" database, typically). The runtime account's roles/datastore.user, in
# cloudrun.tf, is conditioned to this one database.

locals {
  create_firestore = local.firestore && var.firestore_create_database
  # Regional by default, in the service's region: cheaper per operation and per GB than a
  # multi-region, and the service's calls stay in the region. nam5/eur3 for a multi-region.
  firestore_location = coalesce(var.firestore_location, var.region)
}

# The API the server calls, and the one the database is created through. Enabling an API that is
# already on is a no-op; disable_on_destroy = false because other services of the project may use
# Firestore too, and disabling an API is not this module's to decide.
resource "google_project_service" "firestore" {
  count = local.firestore ? 1 : 0

  project            = var.project_id
  service            = "firestore.googleapis.com"
  disable_on_destroy = false
}

resource "google_firestore_database" "books" {
  count = local.create_firestore ? 1 : 0

  project = var.project_id
  # A named database ("books") by default: a project has at most one "(default)" database, which
  # may already exist and belong to something else; a named one is this module's alone.
  name        = var.firestore_database
  location_id = local.firestore_location
  type        = "FIRESTORE_NATIVE"
  # OPTIMISTIC: transactions take no locks; a commit whose documents changed since they were read
  # fails with ABORTED instead. With PESSIMISTIC, a read-write transaction
  # holds locks on what it read until it commits or expires (up to 270 s, 60 s idle): a Cloud Run
  # instance whose CPU is throttled between requests (cpu_idle) or that is stopped mid-transaction
  # would block writers on every other instance for that long. The price of OPTIMISTIC is that the
  # store must retry a commit that fails with ABORTED.
  concurrency_mode = "OPTIMISTIC"
  # The last 7 days readable at any minute (the Cloud SQL store has point-in-time recovery too).
  point_in_time_recovery_enablement = var.firestore_point_in_time_recovery ? "POINT_IN_TIME_RECOVERY_ENABLED" : "POINT_IN_TIME_RECOVERY_DISABLED"
  # API-side protection: no client (console, gcloud, API, Terraform) can delete the database.
  delete_protection_state = var.database_deletion_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  # A plan that removes the database (terraform destroy, switching store) deletes it, and so fails
  # while delete protection is on, like the Cloud SQL instance, instead of leaving it behind
  # unmanaged ("ABANDON", the provider's default) for the next apply to collide with.
  deletion_policy = "DELETE"

  depends_on = [google_project_service.firestore]
}

# The store keeps each AIP-155 request_id in COLLECTION_requests/{id} with an expire_at timestamp
# (BOOKS_REQUEST_ID_TTL_S after the create, default a day): this TTL policy has Firestore delete
# them after that (within about a day, as Firestore documents TTL), so request documents do not
# accumulate. Its index is switched off: the store reads them by name only.
resource "google_firestore_field" "request_ttl" {
  count = local.firestore ? 1 : 0

  project    = var.project_id
  database   = var.firestore_database
  collection = "${lookup(var.firestore_store_params, "collection", "books")}_requests"
  field      = "expire_at"

  ttl_config {}
  index_config {}

  depends_on = [google_firestore_database.books]
}
