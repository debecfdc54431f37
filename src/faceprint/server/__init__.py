"""`faceprint serve`: the Rekognition-compatible HTTP server (AWS JSON 1.1 + SigV4), a REST API,
access keys with small policies, an audit log, local S3 buckets and Prometheus metrics."""
