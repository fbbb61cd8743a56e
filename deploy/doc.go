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
// cluster/compose.yaml (three vaultd nodes on three KRaft brokers) and k8s/
// (a StatefulSet of three nodes, its Services and PodDisruptionBudget) are
// the cluster deployments of issue 13. The test validates them, and
// compose.yaml, against vendored JSON schemas (testdata/schemas: compose-spec,
// Kubernetes 1.31 strict), checks that every vaultd flag they use is one
// vaultd defines, and that node ids, addresses, volumes and brokers agree.
//
// It must never hold secrets, keys or a data directory, and imports
// nothing (internal/archtest enforces it).
package deploy
