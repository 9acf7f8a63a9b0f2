"""Amazon Bedrock batch inference and the S3 it reads and writes, under ``/aws``."""
