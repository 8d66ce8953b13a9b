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
