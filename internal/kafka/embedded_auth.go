package kafka

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/tenantvault/tenantvault/internal/atomicfile"
	"hash"
	"io/fs"
	"os"
	"path/filepath"
)

// setPersistedSCRAM makes user's SCRAM credentials in kfake's persisted
// SASL state (<dataDir>/sasl.json) the ones of password, for both
// mechanisms, before kfake loads it.
//
// kfake seeds its superuser from its options and then replaces every SCRAM
// credential with the persisted ones: without this, a superuser whose
// password changed (or whose credentials were never persisted) could not
// log in again. Other users' entries, and fields this code does not know,
// are kept as they are. No file: nothing to do (the seeded superuser
// applies).
func setPersistedSCRAM(dataDir, user, password string) error {
	path := filepath.Join(dataDir, "sasl.json")
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read broker credentials: %w", err)
	}
	var state map[string]json.RawMessage
	if err := json.Unmarshal(b, &state); err != nil {
		return fmt.Errorf("read broker credentials %s: %w", path, err)
	}
	for _, m := range []struct {
		field, mechanism string
		h                func() hash.Hash
		size             int
	}{
		{"scram256", SCRAMSHA256, sha256.New, sha256.Size},
		{"scram512", SCRAMSHA512, sha512.New, sha512.Size},
	} {
		users := map[string]json.RawMessage{}
		if raw, ok := state[m.field]; ok && string(raw) != "null" {
			if err := json.Unmarshal(raw, &users); err != nil {
				return fmt.Errorf("read broker credentials %s: %s: %w", path, m.field, err)
			}
		}
		salt := make([]byte, 16)
		if _, err := rand.Read(salt); err != nil {
			return err
		}
		const iterations = 4096 // kfake's
		salted, err := pbkdf2.Key(m.h, password, salt, iterations, m.size)
		if err != nil {
			return err
		}
		entry, err := json.Marshal(struct {
			Mechanism  string `json:"mechanism"`
			Salt       []byte `json:"salt"`
			SaltedPass []byte `json:"salted_pass"`
			Iterations int    `json:"iterations"`
		}{m.mechanism, salt, salted, iterations})
		if err != nil {
			return err
		}
		users[user] = entry
		if state[m.field], err = json.Marshal(users); err != nil {
			return err
		}
	}
	out, err := json.Marshal(state)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path, out, atomicfile.Options{}); err != nil {
		return fmt.Errorf("write broker credentials: %w", err)
	}
	return nil
}
