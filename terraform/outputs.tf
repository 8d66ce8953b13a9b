output "uri" {
  description = "HTTPS URI of the service (https://NAME-....run.app). gRPC clients connect to its host on port 443 with TLS."
  value       = google_cloud_run_v2_service.books.uri
}

output "host" {
  description = "Host name of the service, for gRPC targets (\"HOST:443\")."
  value       = trimprefix(google_cloud_run_v2_service.books.uri, "https://")
}

output "service_name" {
  description = "Name of the Cloud Run service."
  value       = google_cloud_run_v2_service.books.name
}

output "image" {
  description = "Image reference the service runs."
  value       = local.image
}

output "service_account_email" {
  description = "Email of the service's dedicated runtime service account."
  value       = google_service_account.books.email
}

output "repository" {
  description = "Docker repository path to tag and push images to: REGION-docker.pkg.dev/PROJECT/REPOSITORY."
  value       = "${google_artifact_registry_repository.books.location}-docker.pkg.dev/${google_artifact_registry_repository.books.project}/${google_artifact_registry_repository.books.repository_id}"
}

output "books_store" {
  description = "BOOKS_STORE the service runs with. Never holds a password (with postgresql it comes from Secret Manager in PGPASSWORD)."
  value       = local.books_store
}

output "cloudsql_connection_name" {
  description = "Connection name (PROJECT:REGION:INSTANCE) of the Cloud SQL instance the postgresql store uses, created or given; null with other stores. For `gcloud sql connect` or `cloud-sql-proxy`."
  value       = local.postgresql ? local.cloudsql_connection_name : null
}

output "firestore_database" {
  description = "Resource name (projects/PROJECT/databases/DATABASE) of the Firestore database the firestore store uses, created or existing; null with other stores. For `gcloud firestore` commands (--database=DATABASE)."
  value       = local.firestore ? "projects/${var.project_id}/databases/${var.firestore_database}" : null
}

output "database_password_secret" {
  description = "ID (projects/PROJECT/secrets/SECRET) of the Secret Manager secret holding the database user's password, when this module created it; null otherwise. Read it with `gcloud secrets versions access latest --secret=SECRET`."
  value       = local.create_cloudsql ? google_secret_manager_secret.db_password[0].id : null
}
