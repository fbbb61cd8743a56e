// Package keysvault adapts the keys package to the interfaces the vault
// declares (vault.Keys, vault.Cipher), so that vault depends on keys only
// through them. It is the one place that converts between the two; the
// server and (through internal/vaulttest) the tests of vault and its HTTP
// API all use it. It imports only events, keys and vault, and no
// third-party package; internal/archtest enforces this.
package keysvault
