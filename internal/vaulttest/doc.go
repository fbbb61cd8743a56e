// Package vaulttest is the one test harness of the vault's wiring: a
// vault.Vault opened on a real keystore (local master key), real Badger
// tenant stores and a real audit log, all in one directory, the way
// internal/server wires them for vaultd (without Kafka, HTTP or fsync). The
// tests of vault and vault/httpapi open their vaults through MustOpen.
//
// It is used only by tests: no non-test package may import it (it calls
// testing.TB and writes into the test's directories); internal/archtest
// enforces this. It holds no fakes of Kafka, Badger or Tink (keys, stores
// and audit log are the real ones), and it puts no key material, token or
// tenant data in a failure message. Of ours it imports events, keys,
// projections, audit, vault and internal/keysvault, the last in one
// function only (vaultKeys).
package vaulttest
