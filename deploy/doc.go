// Package deploy holds no code: it is the home of the compose file
// (compose.yaml: Apache Kafka with SASL/SCRAM and ACLs, kafka-init, vaultd),
// the image (Dockerfile) and their README. Its test checks them
// statically, since no Docker engine runs the suite: the image's /data is
// owned by the user vaultd runs as (nonroot, 65532) so a new named volume
// there is writable; Kafka's data is in a named volume; vaultd has a
// healthcheck that works without a shell (`vaultd healthcheck`); and the
// build context's .dockerignore keeps the data directory, keys, tokens and
// .git out of the image build.
//
// It must never hold secrets, keys or a data directory, and imports
// nothing (internal/archtest enforces it).
package deploy
