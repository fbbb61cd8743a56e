package events

// Key statuses in [KeyInfo].
const (
	KeyEnabled   = "enabled"   // decrypts; the primary also encrypts
	KeyDisabled  = "disabled"  // kept, but decrypts nothing until enabled again
	KeyDestroyed = "destroyed" // its material is gone; its id still names its tenant
)

// KeyInfo describes one of a tenant's keys by its public part only: its id
// (the one in the 5-byte prefix of the ciphertexts it seals), whether it is
// the primary, and its status. It is what the keys package lists and the
// vault reports; it holds no key material.
type KeyInfo struct {
	ID      uint32 `json:"id"`
	Primary bool   `json:"primary"`
	Status  string `json:"status"` // KeyEnabled, KeyDisabled or KeyDestroyed
}
