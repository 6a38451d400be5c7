#!/bin/sh
# One-shot setup of MinIO for the compose deployment, safe to rerun on every `up`:
#   - the exports bucket (RECS_BUCKET) and MLflow's artifact bucket (MLFLOW_BUCKET);
#   - for each, a policy allowing read, write, list and delete in that bucket only, and a user
#     holding it (the pipeline's and the MLflow server's), so neither uses the root account.
set -eu

mc alias set local "$MINIO_URL" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"

grant_bucket() {
  bucket=$1 user=$2 secret=$3
  policy="$bucket-readwrite"
  mc mb --ignore-existing "local/$bucket"
  cat > "/tmp/$policy.json" <<EOF
{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"],
     "Resource": ["arn:aws:s3:::$bucket"]},
    {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                                   "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
     "Resource": ["arn:aws:s3:::$bucket/*"]}
  ]
}
EOF
  mc admin policy create local "$policy" "/tmp/$policy.json"
  # Adding an existing user sets its secret again, so a changed secret in .env takes effect.
  mc admin user add local "$user" "$secret"
  # Attaching a policy the user already holds is an error, hence the check.
  if ! mc admin user info local "$user" --json | grep -q "\"$policy\""; then
    mc admin policy attach local "$policy" --user "$user"
  fi
}

grant_bucket "$RECS_BUCKET" "$PIPELINE_S3_ACCESS_KEY" "$PIPELINE_S3_SECRET_KEY"
grant_bucket "$MLFLOW_BUCKET" "$MLFLOW_S3_ACCESS_KEY" "$MLFLOW_S3_SECRET_KEY"
echo "MinIO ready: buckets $RECS_BUCKET and $MLFLOW_BUCKET"
