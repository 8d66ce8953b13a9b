# books-server on Google Cloud Run (v2 API).
#
# Files:
#   main.tf       terraform and provider settings (this file)
#   variables.tf  inputs, with their defaults and validation
#   cloudrun.tf   Artifact Registry repository, runtime service account, Cloud Run service, invoker IAM
#   outputs.tf    service URI, service account email, Docker repository path
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
      # google_service_account) have the same arguments in 6.x and 7.x.
      version = "~> 8.0"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}
