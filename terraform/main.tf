# books-server on Google Cloud Run (v2 API).
#
# Files:
#   main.tf       terraform and provider settings (this file)
#   variables.tf  inputs, with their defaults and validation
#   cloudrun.tf   Artifact Registry repository, runtime service account, Cloud Run service, invoker IAM,
#                 the store's locals (BOOKS_STORE) and the runtime account's one project role
#   database.tf   the postgresql store: Cloud SQL for PostgreSQL instance, database, user, generated
#                 password in Secret Manager, the runtime account's access to that secret
#   firestore.tf  the firestore store: the Firestore API, a Firestore (Native mode) database, the
#                 request ids' TTL policy and the store's fields exempt from automatic indexing
#                 (the runtime account's roles/datastore.user on it is in cloudrun.tf)
#   outputs.tf    service URI, service account email, Docker repository path, Cloud SQL connection
#                 name, Firestore database
#
# See README.md beside this file for the build, push and deploy commands.

terraform {
  # 1.5: check blocks, startswith(), lifecycle preconditions; all used or relied on below.
  required_version = ">= 1.5"

  required_providers {
    google = {
      source = "hashicorp/google"
      # 8.x is the current major of the provider. The resources used here
      # (google_cloud_run_v2_service with deletion_protection, grpc probes and the h2c
      # port name; google_cloud_run_v2_service_iam_member; google_artifact_registry_repository;
      # google_service_account) have the same arguments in 6.x and 7.x. The postgresql store's
      # resources (google_sql_database_instance, google_sql_database, google_sql_user,
      # google_secret_manager_secret with deletion_protection (6.43+), _secret_version with
      # secret_data, _secret_iam_member, google_project_iam_member) exist in 7.x and are not
      # among the 8.0 upgrade guide's breaking changes. The firestore store's resources
      # (google_firestore_database with concurrency_mode, point_in_time_recovery_enablement,
      # delete_protection_state and deletion_policy; google_project_iam_member's condition
      # block; google_project_service with disable_on_destroy, whose default became false in
      # 7.0 and is set explicitly here) are in 6.x and later, and unchanged by 7.0 and 8.0.
      version = "~> 8.0"
    }
    random = {
      source = "hashicorp/random"
      # random_password (length, special, result) has not changed within 3.x.
      version = "~> 3.6"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}
