# The firestore store's database: a Firestore database in Native mode, reached by the server through
# Firestore's gRPC API (firestore.googleapis.com) with Application Default Credentials, which on
# Cloud Run are the runtime service account's, from the metadata server. Only with
# store = "firestore". Nothing here has a password: the service account's IAM role is the only
# credential, and Cloud Run refreshes its tokens.
#
# The database is created unless firestore_create_database = false names an existing one (the
# project's "(default)" database, typically). The runtime account's roles/datastore.user, in
# cloudrun.tf, is conditioned to this one database. The store's fields are exempt from Firestore's
# automatic indexing, and the request ids have a TTL policy.

locals {
  create_firestore = local.firestore && var.firestore_create_database
  # The store's collections: the books in COLLECTION (the collection parameter, default "books"),
  # AIP-155 request ids in COLLECTION_requests, the page-token key in COLLECTION_meta/dataset.
  firestore_collection  = lookup(var.firestore_store_params, "collection", "books")
  firestore_collections = {
    book     = local.firestore_collection
    requests = "${local.firestore_collection}_requests"
    meta     = "${local.firestore_collection}_meta"
  }
  # Every field the store writes, "KIND.FIELD" with KIND a key of firestore_collections. None is
  # ever queried: the store reads documents by name and its one query, ListBooks' RunQuery, is
  # ordered by __name__ alone, with a start cursor and no filter: no field index is ever used.
  # Books carry the Book message's fields by proto field name (its name is the document's name),
  # write_id, and request_id and request_hash when the create had a request_id; request documents
  # book, request_hash, request_fingerprint and write_id (expire_at is request_ttl's, below). A
  # field added to the Book message must be added here (tests/terraform checks it against the
  # proto).
  firestore_unindexed_fields = [
    "book.display_name", "book.authors", "book.publisher", "book.write_id", "book.request_id", "book.request_hash",
    "requests.book", "requests.request_hash", "requests.request_fingerprint", "requests.write_id",
    "meta.page_token_key",
  ]
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
# accumulate. Its index is switched off too (the provider's own TTL example pairs ttl_config {}
# with index_config {}): the store reads them by name only, Firestore's best practices advise an
# exemption for TTL fields, and an indexed timestamp that only grows would cap the collection's
# writes at about 500 a second.
resource "google_firestore_field" "request_ttl" {
  count = local.firestore ? 1 : 0

  project    = var.project_id
  database   = var.firestore_database
  collection = local.firestore_collections.requests
  field      = "expire_at"

  ttl_config {}
  index_config {}

  depends_on = [google_firestore_database.books]
}

# Firestore keeps ascending and descending single-field indexes on every field by default, and an
# array-contains entry for each element of an array: a book with 100 authors has 108 index entries
# (112 with a request id), every one of them stored, billed as storage and written with the book,
# and none of them ever read. An empty index_config {} exempts each field the store writes from
# automatic indexing (see terraform/README.md for the numbers). Each counts as one of the
# database's single-field configurations (200 without billing, 1000 with); this module makes 12.
resource "google_firestore_field" "unindexed" {
  for_each = local.firestore ? { for f in local.firestore_unindexed_fields : f => {
    collection = local.firestore_collections[split(".", f)[0]]
    field      = split(".", f)[1]
  } } : {}

  project    = var.project_id
  database   = var.firestore_database
  collection = each.value.collection
  field      = each.value.field

  index_config {}

  depends_on = [google_firestore_database.books]
}
